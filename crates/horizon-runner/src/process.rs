//! Process plumbing: spawning a trainer in its own process group, signalling the group, and
//! telling whether a process is alive. Unix only.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Spawn `command` as the leader of a new process group. The child is killed by the kernel
/// (SIGKILL) if the thread that spawned it dies, so a `kill -9` of horizon leaves no orphans
/// training on; the spawning thread must outlive the child (the attempt thread does).
pub fn spawn_in_group(command: &mut Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    command.process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Send `signal` to every process of the group led by `pgid`. A group that is gone is fine.
pub fn signal_group(pgid: u32, signal: i32) {
    // SAFETY: killpg has no memory-safety preconditions.
    let rc = unsafe { libc::killpg(pgid as libc::pid_t, signal) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!("signal {signal} to process group {pgid}: {err}");
        }
    }
}

/// The processes of group `pgid` that carry a trial's marks in their environment
/// (`HORIZON_TRIAL_DIR` and `HORIZON_ATTEMPT` as horizon set them), read from `/proc`.
///
/// A dead worker's trainer left its process group id in a file of its trial directory, which the
/// trainer can overwrite: the id is trusted only for processes that prove they belong to that
/// attempt, so no number a trainer writes makes horizon signal an unrelated process.
pub fn trial_processes_in_group(pgid: u32, trial_dir: &std::path::Path, attempt: u32) -> Vec<u32> {
    use horizon_core::protocol::env;
    use std::os::unix::ffi::OsStrExt;
    let dir_mark = [env::TRIAL_DIR.as_bytes(), b"=", trial_dir.as_os_str().as_bytes()].concat();
    let attempt_mark = format!("{}={attempt}", env::ATTEMPT).into_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // Field 5 of /proc/PID/stat, after the parenthesised command name (which may hold spaces).
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        if after.split_whitespace().nth(2).and_then(|g| g.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let has = |mark: &[u8]| environ.split(|&b| b == 0).any(|v| v == mark);
        if has(&dir_mark) && has(&attempt_mark) {
            found.push(pid);
        }
    }
    found
}

/// Whether a process with this pid exists (it may belong to another user).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or fails.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A signal's name, for messages ("killed by SIGSEGV").
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process in a group of its own, with or without a trial's marks, ended on drop.
    struct Sleeper(Child);

    impl Sleeper {
        fn start(env: &[(&str, &str)]) -> Sleeper {
            let mut cmd = Command::new("sleep");
            cmd.arg("30").process_group(0).envs(env.iter().copied());
            Sleeper(cmd.spawn().unwrap())
        }
        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_group_counts_as_the_trials_only_with_its_marks() {
        let dir = std::path::Path::new("/study/trials/00007");
        let marked = Sleeper::start(&[("HORIZON_TRIAL_DIR", "/study/trials/00007"), ("HORIZON_ATTEMPT", "2")]);
        let other_attempt = Sleeper::start(&[("HORIZON_TRIAL_DIR", "/study/trials/00007"), ("HORIZON_ATTEMPT", "1")]);
        let unrelated = Sleeper::start(&[]);
        // exec has happened once /proc shows the new environment; wait for that by polling the
        // process's own state rather than sleeping a fixed time.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while trial_processes_in_group(marked.pid(), dir, 2).is_empty() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(trial_processes_in_group(marked.pid(), dir, 2), vec![marked.pid()]);
        assert!(trial_processes_in_group(other_attempt.pid(), dir, 2).is_empty(), "another attempt's group");
        assert!(trial_processes_in_group(unrelated.pid(), dir, 2).is_empty(), "an unmarked group");
        assert!(
            trial_processes_in_group(marked.pid(), std::path::Path::new("/study/trials/0000"), 2).is_empty(),
            "a prefix of the directory"
        );
        // The test's own group (what a hostile pgid file would name) is never the trial's.
        let own = unsafe { libc::getpgrp() } as u32;
        assert!(trial_processes_in_group(own, dir, 2).is_empty());
    }
}
