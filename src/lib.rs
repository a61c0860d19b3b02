//! mod_lua for Apache httpd 2.4, reimplemented in Rust. See README.md.
//!
//! Layers: `ffi` (raw bindings) ← `apr`, `httpd` (safe handles) ← `module` (what httpd calls)
//! ← `handler`, `dispatch`, `lua_api`. `config` and `vm` are pure and hold no FFI.
pub mod alloc;
pub mod apr;
pub mod authz;
pub mod config;
pub mod dbd;
pub mod dispatch;
pub mod ffi;
pub mod filter;
pub mod handler;
pub mod hooks;
pub mod httpd;
pub mod lua_api;
pub mod luac;
pub mod module;
pub mod vm;

/// Every Rust allocation of the module, Lua's heap included (see [`alloc`]).
#[global_allocator]
static GLOBAL: alloc::ModuleAlloc = alloc::ModuleAlloc;
