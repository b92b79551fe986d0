//! Tree nodes and their restic-identical JSON encoding.
