//! The Linux front's control channel: a Unix stream socket that carries
//! gatectl's requests — the same IOCTL codes and bytes as on Windows —
//! into the driver's own IRP_MJ_DEVICE_CONTROL handler, through the
//! simulated I/O manager ([`crate::device`]): each request opens the
//! control device with the access the client asks for (so the CTL_CODE
//! access bits are enforced as on Windows), sends one METHOD_BUFFERED IRP
//! and closes. The caller's process id (SO_PEERCRED) is what the driver's
//! PsGetCurrentProcessId returns.
//!
//! Framing (gate-ioctl): `ChannelRequest` + `in_len` bytes, answered by
//! `ChannelReply` + `information` bytes. A frame with a length over
//! `CHANNEL_MAX` closes the connection. Access control is the socket
//! file's: it is created mode 0600 (root, like the Windows device's
//! SYSTEM/Administrators DACL).
//!
//! One path, one server: [`ControlServer::bind`] first connects to an
//! existing socket at the path. If a server answers, it refuses
//! ([`io::ErrorKind::AddrInUse`], naming the path) rather than take the
//! path over; only a stale socket (ECONNREFUSED: nobody listens) is
//! replaced, and anything that is not a socket is left alone (an error).
//! At exit the path is removed only if it is still this server's socket
//! (same device and inode), so a server never deletes another's.
//!
//! ```ignore
//! let server = ControlServer::start("/run/gate/control.sock")?; // one line in gate-sim
//! ```

use gate_ioctl::{ChannelReply, ChannelRequest, Wire, CHANNEL_MAX, USER_PATH};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running control socket (stopped and removed on [`ControlServer::stop`] or drop).
pub struct ControlServer {
    path: Owned,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A bound control socket not serving yet ([`ControlServer::bind`]):
/// clients that connect wait in the listen backlog until
/// [`ControlSocket::serve`]. Dropped unserved, its path is removed.
pub struct ControlSocket {
    path: Owned,
    listener: UnixListener,
}

/// The socket file this server created: removed on drop if the path still
/// names it (device and inode unchanged).
struct Owned {
    path: PathBuf,
    id: (u64, u64),
}

impl Owned {
    fn id_of(path: &Path) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()))
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if Owned::id_of(&self.path) == Some(self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes `path` free for a new socket: nothing there, or a stale socket
/// (connecting is refused) which is removed. A live socket or a file that
/// is not a socket is an error naming the path.
fn claim(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket (not removed; choose another path)",
                path.display()
            ),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "control socket {} is in use by a running gate-sim (stop it, or choose another --control path)",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // Stale: its server is gone.
            std::fs::remove_file(path)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("control socket {}: {e}", path.display()),
        )),
    }
}

fn peer_pid(s: &UnixStream) -> usize {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a connected socket; `cred` and `len` are valid for the call.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r == 0 {
        cred.pid as usize
    } else {
        0
    }
}

fn serve_connection(mut s: UnixStream, stop: &AtomicBool) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let pid = peer_pid(&s);
    loop {
        let mut head = [0u8; ChannelRequest::SIZE];
        // Wait for a frame, checking for stop between timeouts.
        let mut got = 0;
        while got < head.len() {
            match s.read(&mut head[got..]) {
                Ok(0) => return Ok(()),
                Ok(n) => got += n,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let Some(req) = ChannelRequest::from_bytes(&head) else {
            return Ok(());
        };
        if req.in_len > CHANNEL_MAX || req.out_len > CHANNEL_MAX {
            return Ok(());
        }
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut input = vec![0u8; req.in_len as usize];
        s.read_exact(&mut input)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let (status, output) = match crate::device::open(USER_PATH, req.access, pid) {
            Ok(h) => {
                let r = h.ioctl(req.code, &input, req.out_len as usize);
                h.close();
                (r.status, r.output)
            }
            Err(st) => (st, Vec::new()),
        };
        let rep = ChannelReply {
            status,
            reserved: 0,
            information: output.len() as u64,
        };
        s.write_all(rep.as_bytes())?;
        s.write_all(&output)?;
    }
}

impl ControlServer {
    /// Claims `path` (see the module: a live socket there is an
    /// [`io::ErrorKind::AddrInUse`] error naming it, a stale one is
    /// replaced) and binds it, mode 0600; serve with
    /// [`ControlSocket::serve`].
    pub fn bind(path: impl AsRef<Path>) -> io::Result<ControlSocket> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        claim(&path)?;
        let listener = UnixListener::bind(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", path.display())))?;
        let id = Owned::id_of(&path)
            .ok_or_else(|| io::Error::other(format!("{} vanished after bind", path.display())))?;
        let path = Owned { path, id };
        std::fs::set_permissions(&path.path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlSocket { path, listener })
    }

    /// [`ControlServer::bind`] then [`ControlSocket::serve`].
    pub fn start(path: impl AsRef<Path>) -> io::Result<ControlServer> {
        Self::bind(path)?.serve()
    }
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path.path
    }

    /// Stops serving (waits for open connections to notice, at most ~200 ms
    /// each) and removes the socket file. Call before unloading the driver.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The path itself goes when `self.path` drops, if still ours.
    }
}

impl ControlSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path.path
    }

    /// Serves every connection on its own thread until stopped.
    pub fn serve(self) -> io::Result<ControlServer> {
        let ControlSocket { path, listener } = self;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("gate-control".into())
            .spawn(move || {
                let mut conns: Vec<JoinHandle<()>> = Vec::new();
                while !st.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let _ = s.set_nonblocking(false);
                            let st2 = st.clone();
                            if let Ok(t) = std::thread::Builder::new()
                                .name("gate-control-conn".into())
                                .spawn(move || {
                                    let _ = serve_connection(s, &st2);
                                })
                            {
                                conns.push(t);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                    conns.retain(|t| !t.is_finished());
                }
                for t in conns {
                    let _ = t.join();
                }
            })?;
        Ok(ControlServer {
            path,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
