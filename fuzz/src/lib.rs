//! The pure parsers of mod_lua_rs, compiled from its own sources: the module builds only as a
//! shared object (a second, rlib crate type would stop cargo from running LTO on it), which
//! the fuzz targets cannot link against.
#[path = "../../src/lua_api/encode.rs"]
pub mod encode;
#[path = "../../src/lua_api/form.rs"]
pub mod form;
