//! Host-owned shared queues, keyed by `(vm_id, name)`; a queue notifies the
//! root context that registered it last, unless that one cannot be notified
//! (a spare VM not yet in a slot) and an earlier one can.

use super::host_state::SlotEvent;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::mpsc;

struct Queue {
    items: VecDeque<Vec<u8>>,
    owner: Option<(mpsc::UnboundedSender<SlotEvent>, u32)>,
}

#[derive(Default)]
struct Inner {
    ids: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
}

/// All shared queues.
#[derive(Default)]
pub struct SharedQueues {
    inner: Mutex<Inner>,
}

impl SharedQueues {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or re-binds) a queue to a root context; returns its id.
    pub fn register(
        &self,
        vm_id: &str,
        name: &str,
        owner: mpsc::UnboundedSender<SlotEvent>,
        root: u32,
    ) -> u32 {
        let mut inner = self.lock();
        let next = inner.ids.len() as u32 + 1;
        let id = *inner.ids.entry((vm_id.to_string(), name.to_string())).or_insert(next);
        let q = inner.queues.entry(id).or_insert_with(|| Queue { items: VecDeque::new(), owner: None });
        let live = q.owner.as_ref().is_some_and(|(tx, _)| !tx.is_closed());
        if !(owner.is_closed() && live) {
            q.owner = Some((owner, root));
        }
        id
    }

    /// The id of an existing queue.
    pub fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.lock().ids.get(&(vm_id.to_string(), name.to_string())).copied()
    }

    /// Appends an item and notifies the owner; `false` if there is no such queue.
    pub fn enqueue(&self, id: u32, item: Vec<u8>) -> bool {
        let mut inner = self.lock();
        let Some(q) = inner.queues.get_mut(&id) else { return false };
        q.items.push_back(item);
        if let Some((tx, root)) = &q.owner {
            let _ = tx.send(SlotEvent::QueueReady { root: *root, queue: id });
        }
        true
    }

    /// Takes the oldest item: `None` for an unknown queue, `Some(None)` if
    /// empty.
    pub fn dequeue(&self, id: u32) -> Option<Option<Vec<u8>>> {
        let mut inner = self.lock();
        Some(inner.queues.get_mut(&id)?.items.pop_front())
    }
}
