/* C shims over httpd/APR header macros and static inline functions (see shim.c). */
#ifndef LUA_SHIM_H
#define LUA_SHIM_H
#include <httpd.h>

/* APLOG_R_MODULE_IS_LEVEL: would a message at `level` for module `mi` be logged for `r`? */
int lua_shim_r_is_level(const request_rec *r, int mi, int level);
/* APLOG_MODULE_IS_LEVEL for a server. */
int lua_shim_s_is_level(const server_rec *s, int mi, int level);

/* crypt(3) through the re-entrant crypt_r; writes at most outlen-1 bytes. 0 on success. */
int lua_shim_crypt(const char *pw, const char *salt, char *out, unsigned long outlen);
#endif
