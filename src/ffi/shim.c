/* C shims over httpd/APR macros that bindgen cannot translate. Keep this file tiny: every
 * function here is a one-line wrapper, and all logic lives in Rust. */
#include "shim.h"
#include <http_log.h>

int lua_shim_r_is_level(const request_rec *r, int mi, int level)
{
    return APLOG_R_MODULE_IS_LEVEL(r, mi, level);
}

int lua_shim_s_is_level(const server_rec *s, int mi, int level)
{
    return APLOG_MODULE_IS_LEVEL(s, mi, level);
}

#include <crypt.h>
#include <string.h>

int lua_shim_crypt(const char *pw, const char *salt, char *out, unsigned long outlen)
{
    struct crypt_data data;
    const char *r;
    memset(&data, 0, sizeof(data));
    r = crypt_r(pw, salt, &data);
    if (r == NULL || *r == '*' || strlen(r) + 1 > outlen) {
        return -1;
    }
    memcpy(out, r, strlen(r) + 1);
    return 0;
}
