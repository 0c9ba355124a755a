// The store directory (anomaly_store) and its spool/, made ready by nginx's
// master for the workers, which open the store as nginx's `user`.
#pragma once

#include "ngx/ngx.hpp"

#include <string>

namespace anomaly {

// Creates <dir> and <dir>/spool (mode 0700) when missing. When the master
// runs as root and `user` is set, gives both directories, and what a tool run
// as root may have left in them, to `user`, as nginx does with its temp
// paths. A spool/ that is not a real directory (a symbolic link, a file) is
// refused: the workers' user can put a link there, and the master would then
// hand over whatever it points to. Logs [emerg] and returns NGX_ERROR on
// failure.
ngx_int_t prepare_store_dir(ngx_log_t *log, const std::string &dir, ngx_uid_t user) noexcept;

}  // namespace anomaly
