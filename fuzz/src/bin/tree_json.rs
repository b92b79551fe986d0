//! Trees (node lists) as stored in tree blobs, after decryption: decode, re-encode the
//! way cairn writes trees, and decode again to the same nodes.
use cairn_repo::node;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(nodes) = node::decode_tree(data) else {
            return;
        };
        let encoded = node::encode_tree(&nodes);
        let again = node::decode_tree(&encoded).expect("a tree cairn encoded decodes");
        assert_eq!(nodes, again, "tree changed in a decode/encode round trip");
    });
}
