//! LuaAuthzProvider (§8): a Lua function as a `Require` provider. Each `Require` line keeps its
//! own arguments (parsed when the line is read; CVE-2014-8109 came from sharing them), and
//! anything but a valid status — an error, a non-number, an unknown number — denies with
//! AUTHZ_GENERAL_ERROR and a log line, never grants.

use crate::config::{DirConfig, ScriptFile};
use crate::dispatch::{self, Entry, Outcome};
use crate::handler::{log_failure, Site};
use crate::httpd::{Level, Request};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// httpd's authz_status values.
pub const AUTHZ_DENIED: i32 = 0;
pub const AUTHZ_GRANTED: i32 = 1;
pub const AUTHZ_GENERAL_ERROR: i32 = 3;
pub const AUTHZ_DENIED_NO_USER: i32 = 4;

/// One `LuaAuthzProvider name file function` line.
#[derive(Debug)]
pub struct ProviderSpec {
    pub name: String,
    pub file: ScriptFile,
    pub function: String,
}

/// One `Require <provider> args…` line.
pub struct ParsedRequire {
    pub spec: Arc<ProviderSpec>,
    pub args: Vec<String>,
}

/// Providers of the configuration being read (filled in the parent, read by the children it
/// forks). Each entry lives as long as the configuration pool that registered it.
static PROVIDERS: Mutex<Option<HashMap<String, Arc<ProviderSpec>>>> = Mutex::new(None);

/// Removes its provider when the configuration pool it is attached to is cleared.
pub struct Registration(String);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(map) = PROVIDERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            map.remove(&self.0);
        }
    }
}

/// Registers a provider; keep the returned [`Registration`] for the configuration's lifetime.
pub fn register(spec: ProviderSpec) -> Registration {
    let name = spec.name.clone();
    PROVIDERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(name.clone(), Arc::new(spec));
    Registration(name)
}

pub fn lookup(name: &str) -> Option<Arc<ProviderSpec>> {
    PROVIDERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()?
        .get(name)
        .cloned()
}

/// mod_lua `lua_authz_check`: `function(r, arg1, …)` → authz_status.
pub fn check(r: Request<'_>, parsed: &ParsedRequire) -> i32 {
    let spec = &parsed.spec;
    let default_cfg = DirConfig::default();
    let cfg = r.dir_config::<DirConfig>().unwrap_or(&default_cfg);
    let path = spec.file.resolve(r.pool(), cfg.root());
    let entry = Entry {
        args: &parsed.args,
        ..Entry::file(path.as_bytes(), &spec.function)
    };
    match dispatch::call(r, cfg, &entry) {
        Ok(Outcome::Number(n)) if (0..=4).contains(&n) => n as i32,
        Ok(Outcome::Number(n)) => {
            r.log(
                Level::Err,
                &format!(
                    "AH02318: Error: authz provider {}: invalid return value {n}",
                    spec.name
                ),
            );
            AUTHZ_GENERAL_ERROR
        }
        Ok(Outcome::NotNumber) => {
            r.log(
                Level::Err,
                &format!(
                    "AH02317: Error: authz provider {} did not return integer",
                    spec.name
                ),
            );
            AUTHZ_GENERAL_ERROR
        }
        Err(f) => {
            log_failure(r, &entry, Site::Authz(&spec.name), &f);
            AUTHZ_GENERAL_ERROR
        }
    }
}
