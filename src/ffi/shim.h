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

/* Bucket brigades (APR_BRIGADE_* / APR_BUCKET_* macros). */
#include <apr_buckets.h>
/* First bucket, or NULL for an empty brigade. */
apr_bucket *lua_shim_bb_first(apr_bucket_brigade *bb);
/* Bucket after b, or NULL at the end. */
apr_bucket *lua_shim_bucket_next(apr_bucket_brigade *bb, apr_bucket *b);
/* 0 data, 1 EOS, 2 FLUSH, 3 other metadata. */
int lua_shim_bucket_kind(apr_bucket *b);
apr_status_t lua_shim_bucket_read(apr_bucket *b, const char **str, apr_size_t *len, int block);
/* For a file bucket that apr_bucket_read would map into memory (EnableMMAP on): its
 * descriptor and the piece a read would give (at most APR_MMAP_LIMIT bytes; a longer bucket
 * is split there first). 0 for every other bucket. */
int lua_shim_bucket_file_piece(apr_bucket *b, int *fd, apr_off_t *offset, apr_size_t *len);
/* Removes b from its brigade and destroys it. */
void lua_shim_bucket_delete(apr_bucket *b);
/* Moves b to the end of `to`. */
void lua_shim_bucket_move(apr_bucket_brigade *to, apr_bucket *b);
/* Appends a copy of data (heap bucket), an EOS or a FLUSH bucket. */
void lua_shim_bb_append_copy(apr_bucket_brigade *bb, const char *data, apr_size_t len);
void lua_shim_bb_append_eos(apr_bucket_brigade *bb);
/* Appends a transient bucket over data (which must outlive the bucket or its setaside). */
void lua_shim_bb_append_transient(apr_bucket_brigade *bb, const char *data, apr_size_t len);
void lua_shim_bb_append_flush(apr_bucket_brigade *bb);
int lua_shim_bb_empty(apr_bucket_brigade *bb);
#endif
