//! Content-defined chunking, identical to restic/chunker.
