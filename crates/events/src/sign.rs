//! `X-Ferrocast-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes with the sink's
//! secret, as GitHub and Stripe sign theirs, so a receiver can check it with any HMAC library.

use aws_lc_rs::hmac;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-ferrocast-signature";

/// A signing key made once per sink (aws-lc precomputes the padded key blocks).
#[derive(Clone)]
pub(crate) struct Signer(hmac::Key);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("Signer")
    }
}

impl Signer {
    pub(crate) fn new(secret: &str) -> Signer {
        Signer(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
    }

    /// The header value for `body`.
    pub(crate) fn sign(&self, body: &[u8]) -> String {
        let tag = hmac::sign(&self.0, body);
        format!("sha256={}", hex(tag.as_ref()))
    }
}

/// The `X-Ferrocast-Signature` value of `body` under `secret`: `sha256=` and 64 lower-case hex
/// digits.
pub fn signature(secret: &str, body: &[u8]) -> String {
    Signer::new(secret).sign(body)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (a key shorter than the block, ASCII data): an answer computed
    /// by others, not by this code.
    #[test]
    fn matches_rfc_4231_case_2() {
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn depends_on_every_byte_and_the_key() {
        let a = signature("k", b"[{\"id\":1}]");
        assert_ne!(a, signature("k", b"[{\"id\":1}] "));
        assert_ne!(a, signature("K", b"[{\"id\":1}]"));
        assert_eq!(a.len(), "sha256=".len() + 64);
        assert_eq!(format!("{:?}", Signer::new("topsecret")), "Signer");
    }
}
