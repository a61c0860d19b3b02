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

apr_bucket *lua_shim_bb_first(apr_bucket_brigade *bb)
{
    return APR_BRIGADE_EMPTY(bb) ? NULL : APR_BRIGADE_FIRST(bb);
}

apr_bucket *lua_shim_bucket_next(apr_bucket_brigade *bb, apr_bucket *b)
{
    apr_bucket *n = APR_BUCKET_NEXT(b);
    return n == APR_BRIGADE_SENTINEL(bb) ? NULL : n;
}

int lua_shim_bucket_kind(apr_bucket *b)
{
    if (APR_BUCKET_IS_EOS(b)) return 1;
    if (APR_BUCKET_IS_FLUSH(b)) return 2;
    if (APR_BUCKET_IS_METADATA(b)) return 3;
    return 0;
}

apr_status_t lua_shim_bucket_read(apr_bucket *b, const char **str, apr_size_t *len, int block)
{
    return apr_bucket_read(b, str, len, block ? APR_BLOCK_READ : APR_NONBLOCK_READ);
}

void lua_shim_bucket_delete(apr_bucket *b)
{
    apr_bucket_delete(b);
}

void lua_shim_bucket_move(apr_bucket_brigade *to, apr_bucket *b)
{
    APR_BUCKET_REMOVE(b);
    APR_BRIGADE_INSERT_TAIL(to, b);
}

void lua_shim_bb_append_copy(apr_bucket_brigade *bb, const char *data, apr_size_t len)
{
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_heap_create(data, len, NULL, bb->bucket_alloc));
}

void lua_shim_bb_append_eos(apr_bucket_brigade *bb)
{
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
}

void lua_shim_bb_append_flush(apr_bucket_brigade *bb)
{
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(bb->bucket_alloc));
}

int lua_shim_bb_empty(apr_bucket_brigade *bb)
{
    return APR_BRIGADE_EMPTY(bb);
}

#include <apr_mmap.h>
#include <apr_portable.h>

int lua_shim_bucket_file_piece(apr_bucket *b, int *fd, apr_off_t *offset, apr_size_t *len)
{
    apr_bucket_file *f;
    apr_os_file_t os;
    if (!APR_BUCKET_IS_FILE(b) || b->length == 0 || b->length == (apr_size_t)-1) return 0;
    f = b->data;
#if APR_HAS_MMAP
    if (!f->can_mmap) return 0;
#else
    return 0;
#endif
    if (apr_os_file_get(&os, f->fd) != APR_SUCCESS) return 0;
    if (b->length > APR_MMAP_LIMIT && apr_bucket_split(b, APR_MMAP_LIMIT) != APR_SUCCESS) return 0;
    *fd = os;
    *offset = b->start;
    *len = b->length;
    return 1;
}

void lua_shim_bb_append_transient(apr_bucket_brigade *bb, const char *data, apr_size_t len)
{
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create(data, len, bb->bucket_alloc));
}
