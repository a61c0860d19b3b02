//! The exported `lua_module` and hook registration.
pub mod guard;

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut lua_module: crate::ffi::module = crate::ffi::module {
    version: crate::ffi::MODULE_MAGIC_NUMBER_MAJOR,
    minor_version: crate::ffi::MODULE_MAGIC_NUMBER_MINOR,
    module_index: -1,
    name: c"mod_lua.c".as_ptr(),
    dynamic_load_handle: std::ptr::null_mut(),
    next: std::ptr::null_mut(),
    magic: crate::ffi::MODULE_MAGIC_COOKIE as std::ffi::c_ulong,
    rewrite_args: None,
    create_dir_config: None,
    merge_dir_config: None,
    create_server_config: None,
    merge_server_config: None,
    cmds: std::ptr::null(),
    register_hooks: None,
    flags: 0,
};
