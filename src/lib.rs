//! mod_lua for Apache httpd 2.4, reimplemented in Rust. See README.md.
//!
//! Layers: `ffi` (raw bindings) ← `apr`, `httpd` (safe handles) ← `module` (what httpd calls),
//! `handler`, `dispatch`, `lua_api`. `config` and `vm` are pure and carry no unsafe code.
pub mod apr;
pub mod config;
pub mod ffi;
pub mod httpd;
pub mod module;
pub mod vm;
