//! `memshare-bridge` (the command line comes with the bridge itself).

fn main() {}
