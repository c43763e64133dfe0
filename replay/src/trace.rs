//! A multi-turn chat trace: conversations over a few hundred shared system
//! prompts, each turn's prompt the conversation so far plus a new user
//! message, interleaved across many live conversations on an advancing clock.

/// The size classes decisions are reported in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    /// Prompts under 3,000 characters (short system prompts, early turns).
    Chars1k,
    /// Prompts of 3,000 to 16,000 characters.
    Chars8k,
    /// Prompts of 16,000 characters and more (long documents).
    Chars32k,
}

impl Bucket {
    /// Every bucket, smallest first.
    pub const ALL: [Bucket; 3] = [Bucket::Chars1k, Bucket::Chars8k, Bucket::Chars32k];

    /// The bucket of a prompt of `chars` characters.
    pub fn of(chars: usize) -> Self {
        match chars {
            0..3_000 => Self::Chars1k,
            3_000..16_000 => Self::Chars8k,
            _ => Self::Chars32k,
        }
    }

    /// Its label in reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::Chars1k => "~1k",
            Self::Chars8k => "~8k",
            Self::Chars32k => "~32k",
        }
    }
}

/// What the generated trace looks like.
#[derive(Clone, Debug)]
pub struct TraceShape {
    /// Seed of every random choice.
    pub seed: u64,
    /// Shared system prompts conversations start from (popularity skewed:
    /// the first few carry most conversations).
    pub system_prompts: usize,
    /// Conversations in progress at once; a finished one is replaced.
    pub live_conversations: usize,
    /// Most turns a conversation has (each has 1 to this many, uniformly).
    pub max_turns: u32,
    /// Mean milliseconds between two requests (exponential gaps).
    pub mean_gap_ms: f64,
}

impl Default for TraceShape {
    /// 300 system prompts, 2,000 live conversations of up to 10 turns, a
    /// request every 2 ms on average (500 requests a second over the fleet;
    /// a conversation's next turn comes about 4 s after its last).
    fn default() -> Self {
        Self { seed: 13, system_prompts: 300, live_conversations: 2_000, max_turns: 10, mean_gap_ms: 2.0 }
    }
}

/// One request of the trace.
#[derive(Clone, Debug)]
pub struct Turn {
    /// The conversation it belongs to (numbered from 0 in order of start).
    pub conversation: u64,
    /// The whole prompt: system prompt, earlier exchanges, new user message.
    pub prompt: String,
    /// Milliseconds since the start of the trace.
    pub time_ms: u64,
}

/// A size class of system prompt and exchange.
#[derive(Clone, Copy)]
struct Class {
    system_chars: usize,
    user_chars: (usize, usize),
    reply_chars: (usize, usize),
}

/// Chat (short system prompt, short messages), assistant (a few thousand
/// characters of instructions) and long-document work.
const CLASSES: [Class; 3] = [
    Class { system_chars: 500, user_chars: (40, 200), reply_chars: (80, 300) },
    Class { system_chars: 6_000, user_chars: (100, 600), reply_chars: (200, 1_000) },
    Class { system_chars: 24_000, user_chars: (100, 800), reply_chars: (300, 1_500) },
];

struct Conversation {
    id: u64,
    class: Class,
    /// The system prompt and every finished exchange.
    text: String,
    turns_left: u32,
}

/// The trace: an endless iterator of [`Turn`]s.
pub struct Trace {
    shape: TraceShape,
    rng: fastrand::Rng,
    systems: Vec<(Class, String)>,
    live: Vec<Conversation>,
    next_conversation: u64,
    clock_ms: f64,
}

impl Trace {
    /// A trace of the given shape.
    pub fn new(shape: TraceShape) -> Self {
        let mut rng = fastrand::Rng::with_seed(shape.seed);
        let systems = (0..shape.system_prompts.max(1))
            .map(|i| {
                let class = CLASSES[i % CLASSES.len()];
                let text = format!("System prompt {i}. {}", words(&mut rng, class.system_chars));
                (class, text)
            })
            .collect();
        let mut trace = Self { shape, rng, systems, live: Vec::new(), next_conversation: 0, clock_ms: 0.0 };
        for _ in 0..trace.shape.live_conversations.max(1) {
            let conversation = trace.start();
            trace.live.push(conversation);
        }
        trace
    }

    fn start(&mut self) -> Conversation {
        // Skewed popularity: u² puts about a third of conversations on the
        // first tenth of the system prompts.
        let u = self.rng.f64();
        let pick = ((u * u) * self.systems.len() as f64) as usize;
        let (class, system) = &self.systems[pick.min(self.systems.len() - 1)];
        let id = self.next_conversation;
        self.next_conversation += 1;
        let turns_left = self.rng.u32(1..=self.shape.max_turns.max(1));
        Conversation { id, class: *class, text: system.clone(), turns_left }
    }
}

impl Iterator for Trace {
    type Item = Turn;

    fn next(&mut self) -> Option<Turn> {
        let gap = -self.shape.mean_gap_ms * (1.0 - self.rng.f64()).ln();
        self.clock_ms += gap;
        let at = self.rng.usize(..self.live.len());
        let rng = &mut self.rng;
        let conversation = &mut self.live[at];
        let (lo, hi) = conversation.class.user_chars;
        let chars = rng.usize(lo..=hi);
        let user = format!("\nUser: {}", words(rng, chars));
        let mut prompt = String::with_capacity(conversation.text.len() + user.len());
        prompt.push_str(&conversation.text);
        prompt.push_str(&user);
        let (lo, hi) = conversation.class.reply_chars;
        let chars = rng.usize(lo..=hi);
        let reply = format!("\nAssistant: {}", words(rng, chars));
        conversation.text.push_str(&user);
        conversation.text.push_str(&reply);
        conversation.turns_left -= 1;
        let turn = Turn { conversation: conversation.id, prompt, time_ms: self.clock_ms as u64 };
        if conversation.turns_left == 0 {
            self.live[at] = self.start();
        }
        Some(turn)
    }
}

/// `chars` characters of random words.
fn words(rng: &mut fastrand::Rng, chars: usize) -> String {
    const WORDS: [&str; 32] = [
        "the ",
        "cache ",
        "prefix ",
        "router ",
        "token ",
        "replica ",
        "block ",
        "load ",
        "model ",
        "queue ",
        "batch ",
        "prompt ",
        "reply ",
        "user ",
        "system ",
        "context ",
        "answer ",
        "question ",
        "of ",
        "and ",
        "to ",
        "in ",
        "is ",
        "that ",
        "for ",
        "with ",
        "on ",
        "as ",
        "by ",
        "it ",
        "a ",
        "we ",
    ];
    let mut s = String::with_capacity(chars + 12);
    while s.len() < chars {
        s.push_str(WORDS[rng.usize(..WORDS.len())]);
    }
    s.truncate(chars);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversations_turns_extend_its_earlier_prompts() {
        let shape = TraceShape { live_conversations: 3, ..TraceShape::default() };
        let mut last: std::collections::HashMap<u64, String> = Default::default();
        let mut extended = 0;
        for turn in Trace::new(shape).take(200) {
            if let Some(before) = last.get(&turn.conversation) {
                assert!(turn.prompt.starts_with(before.as_str()));
                assert!(turn.prompt.len() > before.len());
                extended += 1;
            }
            last.insert(turn.conversation, turn.prompt);
        }
        assert!(extended > 100, "{extended} later turns");
    }

    #[test]
    fn the_trace_is_the_same_for_a_seed_and_its_clock_advances() {
        let a: Vec<Turn> = Trace::new(TraceShape::default()).take(50).collect();
        let b: Vec<Turn> = Trace::new(TraceShape::default()).take(50).collect();
        assert!(a.iter().zip(&b).all(|(x, y)| x.prompt == y.prompt && x.time_ms == y.time_ms));
        assert!(a.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
        assert!(a[49].time_ms > a[0].time_ms);
    }

    #[test]
    fn every_bucket_is_met() {
        let mut seen = std::collections::HashSet::new();
        for turn in Trace::new(TraceShape::default()).take(3_000) {
            seen.insert(Bucket::of(turn.prompt.len()));
        }
        assert_eq!(seen.len(), 3);
    }
}
