//! Integration tests of `sys` against the real tools. The ones that need root, network namespaces
//! and haproxy are ignored by default and run by `cargo xtask test`.

mod haproxy;
