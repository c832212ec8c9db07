//! High-entropy bearer secrets (service tokens, and later refresh, invitation and reset tokens):
//! 256 random bits from the OS CSPRNG, and the SHA-256 under which they are stored. A plain hash
//! is right for these: with 256 bits of entropy there is nothing to brute-force.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new token: `prefix` (which tells an operator what kind of token leaked) plus 43 characters.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The digest a token is stored and looked up under.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The digest as lower-case hex, the form used in configuration.
pub fn digest_hex(token: &str) -> String {
    digest(token).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let a = generate("idt_");
        let b = generate("idt_");
        assert_ne!(a, b);
        assert!(a.starts_with("idt_"));
        assert_eq!(a.len(), 4 + 43);
        assert_eq!(
            digest_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
