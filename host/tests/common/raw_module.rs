//! A minimal proxy-wasm module written with `wasm-encoder`, whose request
//! and tick callbacks do what a test tells them: the host's canary and
//! rollback checks need modules that trap exactly where asked.

/// A minimal proxy-wasm module (ABI 0.2.1, no imports) whose
/// `on_request_headers` and `on_tick` do what they are told.
pub fn raw_module(request_headers: Callback, tick: Callback) -> Vec<u8> {
    use wasm_encoder::{
        BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection,
        GlobalSection, GlobalType, MemorySection, MemoryType, Module, TypeSection, ValType,
    };
    const I32: ValType = ValType::I32;
    let mut types = TypeSection::new();
    types.ty().function([I32, I32], []); // 0: (i32, i32)
    types.ty().function([I32, I32], [I32]); // 1: (i32, i32) -> i32
    types.ty().function([I32, I32, I32], [I32]); // 2: (i32, i32, i32) -> i32
    types.ty().function([], []); // 3: ()
    types.ty().function([I32], [I32]); // 4: (i32) -> i32
    types.ty().function([I32], []); // 5: (i32)
    let mut functions = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    let callback = |c: Callback, f: &mut Function, ok: Option<i32>| match c {
        Callback::Ok => {
            if let Some(v) = ok {
                f.instructions().i32_const(v);
            }
        }
        Callback::Trap => {
            f.instructions().unreachable();
        }
        // counter += 1; if counter > k { unreachable }; Continue
        Callback::TrapAfter(k) => {
            f.instructions()
                .global_get(0)
                .i32_const(1)
                .i32_add()
                .global_set(0)
                .global_get(0)
                .i32_const(i32::from(k))
                .i32_gt_s()
                .if_(BlockType::Empty)
                .unreachable()
                .end()
                .i32_const(ok.unwrap_or(0));
        }
    };
    let entries: [(&str, u32, Callback, Option<i32>); 7] = [
        ("proxy_abi_version_0_2_1", 3, Callback::Ok, None),
        ("proxy_on_context_create", 0, Callback::Ok, None),
        ("proxy_on_vm_start", 1, Callback::Ok, Some(1)),
        ("proxy_on_configure", 1, Callback::Ok, Some(1)),
        ("proxy_on_request_headers", 2, request_headers, Some(0)), // 0: Continue
        ("proxy_on_memory_allocate", 4, Callback::Ok, Some(1024)),
        ("proxy_on_tick", 5, tick, None),
    ];
    for (index, (name, ty, behaviour, ok)) in (0u32..).zip(entries) {
        functions.function(ty);
        exports.export(name, ExportKind::Func, index);
        let mut f = Function::new([]);
        callback(behaviour, &mut f, ok);
        f.instructions().end();
        code.function(&f);
    }
    exports.export("memory", ExportKind::Memory, 0);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut globals = GlobalSection::new();
    globals.global(GlobalType { val_type: I32, mutable: true, shared: false }, &ConstExpr::i32_const(0));
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&memories)
        .section(&globals)
        .section(&exports)
        .section(&code);
    module.finish()
}

#[derive(Clone, Copy)]
pub enum Callback {
    Ok,
    Trap,
    /// Traps on every call after the first `k` (k < 64).
    TrapAfter(u8),
}
