//! The control socket's file: a daemon never takes over a socket another
//! daemon answers on, never deletes what is not a socket, and at exit
//! removes the socket only if it is still the one it bound.
//!
//! Two daemons of two state dirs may be given one `--socket`: the state
//! dir's lock does not protect the socket path, so the second one asks the
//! path first. A socket nobody answers on is a dead daemon's, and is
//! replaced.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::MAX_SOCKET_PATH;
use crate::error::Exit;

/// How long a daemon that holds a socket has to accept a connection.
const PROBE: Duration = Duration::from_secs(2);

/// Why the control socket cannot be ours.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "control socket path {path} is {len} bytes, over the {MAX_SOCKET_PATH}-byte limit of Unix \
         sockets: use --socket with a shorter path"
    )]
    TooLong { path: PathBuf, len: usize },
    #[error(
        "another crawld daemon answers on the control socket {path}: stop it first, or give this \
         one its own --socket"
    )]
    InUse { path: PathBuf },
    #[error(
        "{path} exists and is not a socket: crawld does not replace it; remove it, or choose \
         another --socket"
    )]
    NotASocket { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SocketError {
    /// A socket in use is the "in use" of the exit code table; anything
    /// else needs another path, which no restart brings: a config error.
    pub fn exit(&self) -> Exit {
        match self {
            SocketError::InUse { .. } => Exit::Locked,
            _ => Exit::Config,
        }
    }
}

/// The socket file this daemon bound, by device and inode.
#[derive(Debug)]
pub struct BoundSocket {
    path: PathBuf,
    id: (u64, u64),
}

impl BoundSocket {
    /// Removes the socket if it is still the one bound: a daemon started
    /// since on this path keeps its own.
    pub fn remove(self) {
        let same =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if same {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Checks, without changing anything, that the daemon can have the socket
/// at `path`: short enough, and nothing there but a stale socket.
pub async fn check(path: &Path) -> Result<(), SocketError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(SocketError::TooLong {
            path: path.to_path_buf(),
            len,
        });
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::Io {
                what: "cannot inspect",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    // A stopped (SIGSTOP) daemon's socket still accepts: the kernel queues
    // the connection. Only a refused one is stale.
    match tokio::time::timeout(PROBE, tokio::net::UnixStream::connect(path)).await {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        Ok(Err(source)) => Err(SocketError::Io {
            what: "cannot probe the control socket",
            path: path.to_path_buf(),
            source,
        }),
        Ok(Ok(_)) | Err(_) => Err(SocketError::InUse {
            path: path.to_path_buf(),
        }),
    }
}

/// Binds the socket (mode 0660, for the daemon's group) after [`check`]ing
/// it again, replacing a stale one.
pub async fn bind(path: &Path) -> Result<(tokio::net::UnixListener, BoundSocket), SocketError> {
    check(path).await?;
    let io = |what, source| SocketError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot remove the stale socket", e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::create_private_dir(dir).map_err(|e| SocketError::Io {
            what: "cannot create",
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| io("cannot bind the control socket", e))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| io("cannot inspect", e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| io("cannot set the mode of", e))?;
    }
    Ok((
        listener,
        BoundSocket {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        },
    ))
}
