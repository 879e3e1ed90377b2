//! The supervisor between the host and a granted program: the forked child becomes a child
//! subreaper, forks the program, and when the program ends (or the host lets go of the
//! lifeline, on timeout or cancel, or by dying) kills every process the program left behind,
//! `setsid` daemons included, before it exits with the program's status. So nothing a step
//! starts outlives its command, and no leftover keeps the output pipes open.
//!
//! Everything here runs between `fork` and `exec` of a multi-threaded host, so it only makes
//! system calls on stack buffers: no allocation, no locks.

use std::os::fd::RawFd;

/// Runs in the forked child. Returns in the program's process (which then goes on to `exec`);
/// in the supervisor it never returns.
///
/// # Safety
/// Only between `fork` and `exec`, with `lifeline` the read end of the host's lifeline pipe.
pub unsafe fn split(lifeline: RawFd) -> std::io::Result<()> {
    // SAFETY (whole function): plain system calls on values on this stack.
    unsafe {
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let pid = libc::fork();
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // The program: dies with its supervisor, and does not hold the lifeline.
            libc::close(lifeline);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            return Ok(());
        }
        supervise(pid, lifeline)
    }
}

unsafe fn supervise(pid: libc::pid_t, lifeline: RawFd) -> ! {
    // SAFETY (whole function): plain system calls on values on this stack.
    unsafe {
        // Hold nothing of the host's: not its pipes (std's exec-error pipe, the output pipes:
        // the host must see them close when the program's side closes), not other lifelines.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            if null >= 0 {
                libc::dup2(null, fd);
            } else {
                libc::close(fd);
            }
        }
        let keep = lifeline as libc::c_uint;
        libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
        libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);

        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0u32) as RawFd;
        let mut status: libc::c_int = 0;
        let mut done = false;
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: lifeline,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // Without a pidfd (old kernel), look every 10 ms.
            let timeout = if pidfd < 0 { 10 } else { -1 };
            let n = libc::poll(fds.as_mut_ptr(), 2, timeout);
            if n < 0 && *libc::__errno_location() != libc::EINTR {
                break;
            }
            if fds[1].revents != 0 {
                // The host let go: timeout, cancel, or the host itself is gone.
                libc::kill(pid, libc::SIGKILL);
                break;
            }
            if libc::waitpid(pid, &mut status, libc::WNOHANG) == pid {
                done = true;
                break;
            }
        }
        if !done {
            libc::waitpid(pid, &mut status, 0);
        }
        kill_descendants();
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
        libc::_exit(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        })
    }
}

/// Kills every remaining child (orphans of the program are re-parented here, the subreaper)
/// until none is left.
unsafe fn kill_descendants() {
    // SAFETY (whole function): plain system calls on values on this stack.
    unsafe {
        let mut buf = [0u8; 4096];
        for _ in 0..10_000 {
            let fd = libc::open(
                c"/proc/thread-self/children".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            let mut any = false;
            if fd >= 0 {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                libc::close(fd);
                let mut pid: libc::pid_t = 0;
                for &b in &buf[..n.max(0) as usize] {
                    if b.is_ascii_digit() {
                        pid = pid * 10 + libc::pid_t::from(b - b'0');
                    } else if pid > 0 {
                        libc::kill(pid, libc::SIGKILL);
                        any = true;
                        pid = 0;
                    }
                }
                if pid > 0 {
                    libc::kill(pid, libc::SIGKILL);
                    any = true;
                }
            }
            // Reap what died; their own children come to us next round.
            let mut st = 0;
            loop {
                let r = libc::waitpid(-1, &mut st, libc::WNOHANG);
                if r > 0 {
                    any = true;
                    continue;
                }
                if r < 0 && *libc::__errno_location() == libc::ECHILD && !any {
                    return;
                }
                break;
            }
            if !any {
                // Children exist but none was listed or reaped yet: give them a moment.
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                };
                libc::nanosleep(&ts, std::ptr::null_mut());
            }
        }
    }
}
