//! `central-server`: the governing authority's member registry and global configuration publisher.

fn main() {}
