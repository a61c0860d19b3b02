//! Generates Rust bindings to the installed httpd/APR headers and builds the small C shim that
//! covers header-only macros and static inline functions. Include paths come from `apxs` and
//! `apr-1-config`; nothing is hard-coded.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn query(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{cmd}`: {e}. Install the httpd development headers \
             (Debian: apt-get install apache2-dev), or run scripts/install-deps.sh"
        )
    });
    if !out.status.success() {
        panic!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn apxs() -> String {
    env::var("APXS").unwrap_or_else(|_| "apxs".to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=src/ffi/wrapper.h");
    println!("cargo:rerun-if-changed=src/ffi/shim.c");
    println!("cargo:rerun-if-env-changed=APXS");
    println!("cargo:rerun-if-changed=src/hot_text.ld");
    println!("cargo:rerun-if-env-changed=MOD_LUA_RS_NO_HOT_TEXT");

    // The functions that run in httpd's children, placed together (bench/layout.py makes the
    // list): a child then keeps a third of the module's code resident instead of all of it.
    let hot_text = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .join("src")
        .join("hot_text.ld");
    // MOD_LUA_RS_NO_HOT_TEXT=1 links without it (to compare).
    let wanted = env::var("MOD_LUA_RS_NO_HOT_TEXT").as_deref() != Ok("1");
    if wanted && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") && hot_text.exists() {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{}", hot_text.display());
    }

    let apxs = apxs();
    let includedir = query(&apxs, &["-q", "INCLUDEDIR"]);
    let extra_cppflags = query(&apxs, &["-q", "EXTRA_CPPFLAGS"]);
    let apr_config = query(&apxs, &["-q", "APR_CONFIG"]);
    let apr_flags = query(&apr_config, &["--cppflags", "--includes"]);

    let mut clang_args: Vec<String> = vec![format!("-I{includedir}"), "-Isrc/ffi".to_string()];
    clang_args.extend(extra_cppflags.split_whitespace().map(str::to_string));
    clang_args.extend(apr_flags.split_whitespace().map(str::to_string));

    let bindings = bindgen::Builder::default()
        .header("src/ffi/wrapper.h")
        .clang_args(&clang_args)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .default_macro_constant_type(bindgen::MacroTypeVariation::Signed)
        .allowlist_function("ap_.*|apr_.*|lua_shim_.*")
        .allowlist_type("request_rec|conn_rec|server_rec|module|command_rec|cmd_parms|ap_.*|apr_.*|authz_provider|authz_status")
        .allowlist_var(
            "MODULE_MAGIC_.*|OK|DECLINED|DONE|SUSPENDED|HTTP_.*|M_.*|APR_.*|AP_.*|APLOG_.*|\
             OR_.*|ACCESS_CONF|RSRC_CONF|EXEC_ON_READ|NOT_IN_.*|GLOBAL_ONLY|PROXYREQ_.*|\
             REQUEST_.*|OPT_.*|AUTHZ_.*|ap_scoreboard_image|ap_loaded_modules|ap_server_argv0|ap_server_root|ap_scoreboard_fname|ap_conftree|AP_MPMQ_.*|APR_FINFO_.*|APR_OS_DEFAULT",
        )
        .blocklist_function("apr_.*printf.*|ap_.*printf.*|ap_log_.*error")
        .allowlist_function("ap_log_rerror_|ap_log_error_|ap_log_perror_")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen failed to generate the httpd/APR bindings");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write bindings.rs");

    let mut build = cc::Build::new();
    build
        .file("src/ffi/shim.c")
        .include("src/ffi")
        .include(&includedir)
        .warnings(true);
    for flag in extra_cppflags
        .split_whitespace()
        .chain(apr_flags.split_whitespace())
    {
        if let Some(inc) = flag.strip_prefix("-I") {
            build.include(inc);
        } else if let Some(def) = flag.strip_prefix("-D") {
            let mut kv = def.splitn(2, '=');
            build.define(kv.next().unwrap(), kv.next());
        }
    }
    build.compile("lua_shim");
    // crypt_r for r:htpassword(..., 3).
    println!("cargo:rustc-link-lib=crypt");
}
