//! Pack header decoding, after decryption: the input is `[u32 LE data length][plaintext
//! header]`; the harness seals the plaintext with a fixed key and hands it to the parser.
use cairn_repo::pack;

fn main() {
    let key = cairn_fuzz::fixed_key();
    afl::fuzz!(|data: &[u8]| {
        let Some((len, plain)) = data.split_first_chunk::<4>() else {
            return;
        };
        let data_len = u64::from(u32::from_le_bytes(*len));
        let encrypted = key.seal(plain);
        let pack_size = data_len + encrypted.len() as u64 + 4;
        let mut tail = encrypted.clone();
        tail.extend_from_slice(&(encrypted.len() as u32).to_le_bytes());
        if let Ok(n) = pack::header_length(&tail, pack_size) {
            assert_eq!(n as usize, encrypted.len());
        }
        if let Ok(blobs) = pack::parse_header(&key, &encrypted, pack_size) {
            for b in &blobs {
                assert!(
                    u64::from(b.offset) + u64::from(b.length) <= data_len,
                    "blob {b:?} outside the {data_len} data bytes"
                );
            }
        }
    });
}
