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
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
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
    /// Listens on `path` (an existing socket file there is replaced) and
    /// serves every connection on its own thread until stopped.
    pub fn start(path: impl AsRef<Path>) -> io::Result<ControlServer> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
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

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
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
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
