#include "ngx/store_dir.hpp"

#include <cerrno>
#include <cstring>
#include <exception>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace anomaly {

namespace {

constexpr const char *kSpool = "spool";

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    ~Fd() {
        if (fd_ >= 0) close(fd_);
    }
    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }

private:
    int fd_;
};

ngx_int_t emerg(ngx_log_t *log, ngx_err_t err, const char *what, const std::string &path) {
    ngx_log_error(NGX_LOG_EMERG, log, err, "anomaly_store: %s \"%s\"", what, path.c_str());
    return NGX_ERROR;
}

// As ngx_create_paths does for nginx's temp paths: the workers' user owns
// the directory and may list, enter and write it. Through the open
// directory, so that the directory checked is the one changed.
ngx_int_t hand_over_dir(ngx_log_t *log, int fd, const std::string &path, ngx_uid_t user) {
    struct stat st;
    if (fstat(fd, &st) != 0) return emerg(log, ngx_errno, "cannot stat", path);
    if (st.st_uid != user && fchown(fd, user, static_cast<gid_t>(-1)) != 0)
        return emerg(log, ngx_errno, "cannot chown", path);
    if ((st.st_mode & S_IRWXU) != S_IRWXU && fchmod(fd, (st.st_mode & 07777) | S_IRWXU) != 0)
        return emerg(log, ngx_errno, "cannot chmod", path);
    return NGX_OK;
}

// Gives the workers' user every entry of a directory but `skip`, relative to
// the directory's descriptor and never following a symbolic link.
ngx_int_t hand_over_entries(ngx_log_t *log, int dirfd, const std::string &path, ngx_uid_t user,
                            const char *skip) {
    int list_fd = dup(dirfd);
    DIR *d = list_fd < 0 ? nullptr : fdopendir(list_fd);
    if (d == nullptr) {
        ngx_err_t err = ngx_errno;
        if (list_fd >= 0) close(list_fd);
        return emerg(log, err, "cannot list", path);
    }
    ngx_int_t rc = NGX_OK;
    while (dirent *e = readdir(d)) {
        const char *name = e->d_name;
        if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) continue;
        if (skip != nullptr && std::strcmp(name, skip) == 0) continue;
        // A running owner removes spool files and LevelDB replaces its files
        // at any moment: one gone since the listing is not an error (a reload
        // under fit load failed on that).
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;
            rc = emerg(log, ngx_errno, "cannot stat", path + "/" + name);
            break;
        }
        if (st.st_uid == user) continue;
        // Another name of a file elsewhere: handing it over would hand that
        // file over too.
        if (!S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode) && st.st_nlink > 1) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "anomaly_store: \"%s/%s\" has other hard links, so it is left to its owner",
                          path.c_str(), name);
            continue;
        }
        if (fchownat(dirfd, name, user, static_cast<gid_t>(-1), AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT) {
            rc = emerg(log, ngx_errno, "cannot chown", path + "/" + name);
            break;
        }
    }
    closedir(d);
    return rc;
}

ngx_int_t hand_over(ngx_log_t *log, const std::string &dir, ngx_uid_t user) {
    // The store's own path is the operator's to choose, links included.
    Fd store(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!store) return emerg(log, ngx_errno, "cannot open", dir);
    if (hand_over_dir(log, store.get(), dir, user) != NGX_OK) return NGX_ERROR;

    // What is inside is the workers' to change: spool/ is opened without
    // following a link, and everything below goes through its descriptor.
    const std::string spool_path = dir + "/" + kSpool;
    if (mkdirat(store.get(), kSpool, 0700) != 0 && errno != EEXIST)
        return emerg(log, ngx_errno, "cannot create", spool_path);
    Fd spool(openat(store.get(), kSpool, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!spool) {
        ngx_err_t err = ngx_errno;
        struct stat st;
        if (fstatat(store.get(), kSpool, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "anomaly_store: \"%s\" is a symbolic link, not a directory: nginx will not hand "
                          "what it points to to the workers' user; remove it and nginx creates the directory",
                          spool_path.c_str());
            return NGX_ERROR;
        }
        if (err == ENOTDIR) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "anomaly_store: \"%s\" is not a directory; remove it and nginx creates the directory",
                          spool_path.c_str());
            return NGX_ERROR;
        }
        return emerg(log, err, "cannot open", spool_path);
    }
    if (hand_over_dir(log, spool.get(), spool_path, user) != NGX_OK) return NGX_ERROR;
    if (hand_over_entries(log, store.get(), dir, user, kSpool) != NGX_OK) return NGX_ERROR;
    return hand_over_entries(log, spool.get(), spool_path, user, nullptr);
}

}  // namespace

ngx_int_t prepare_store_dir(ngx_log_t *log, const std::string &dir, ngx_uid_t user) noexcept {
    try {
        if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return emerg(log, ngx_errno, "cannot create", dir);
        // A master that is not root runs its workers as itself: they create
        // spool/ and own what they write.
        if (geteuid() != 0 || user == static_cast<ngx_uid_t>(NGX_CONF_UNSET_UINT)) return NGX_OK;
        return hand_over(log, dir, user);
    } catch (const std::exception &e) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "anomaly_store: \"%s\": %s", dir.c_str(), e.what());
        return NGX_ERROR;
    }
}

}  // namespace anomaly
