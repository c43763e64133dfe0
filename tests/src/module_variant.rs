//! A variant of a wasm module: the module with one custom section appended.
//! A custom section changes nothing a host runs, only the module's bytes and
//! so its sha256, so a host swapping to a variant compiles it and starts
//! fresh VMs as it would for a new release of the filter.

use wasm_encoder::Section as _;

/// Name of the custom section that makes a variant distinct.
pub const VARIANT_SECTION: &str = "prefixgate-variant";

/// `module` with a custom section named [`VARIANT_SECTION`] holding `label`
/// appended (custom sections may come anywhere, the last one included).
pub fn variant(module: &[u8], label: &str) -> Vec<u8> {
    let section = wasm_encoder::CustomSection { name: VARIANT_SECTION.into(), data: label.as_bytes().into() };
    let mut out = module.to_vec();
    section.append_to(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::{variant, VARIANT_SECTION};

    #[test]
    fn a_variant_is_the_module_with_one_custom_section_carrying_its_label() {
        let empty = wasm_encoder::Module::new().finish();
        for label in ["swap-7", &"x".repeat(200)] {
            let out = variant(&empty, label);
            assert!(out.starts_with(&empty));
            let mut customs = Vec::new();
            for payload in wasmparser::Parser::new(0).parse_all(&out) {
                match payload.unwrap() {
                    wasmparser::Payload::CustomSection(c) => {
                        customs.push((c.name().to_owned(), c.data().to_vec()))
                    }
                    wasmparser::Payload::Version { .. } | wasmparser::Payload::End(_) => {}
                    other => panic!("unexpected payload {other:?}"),
                }
            }
            assert_eq!(customs, [(VARIANT_SECTION.to_owned(), label.as_bytes().to_vec())]);
        }
    }
}
