// The one place nginx's C headers are included. They come first, inside
// extern "C", before any standard header: nginx defines _FILE_OFFSET_BITS and
// friends, and every translation unit must agree on off_t.
#pragma once

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>
}
