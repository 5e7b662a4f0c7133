//! The files horizon creates and deletes in a trial directory, made safe against what a trainer
//! writes.
//!
//! A trainer names paths (checkpoints it announces) and can create anything in its trial
//! directory, including symbolic links. horizon acts on those names in exactly two ways, both
//! here:
//!
//! - [`remove_announced`] deletes an announced checkpoint, and only when the path resolves
//!   (symbolic links and `..` included) to a *strict descendant* of the trial's own directory
//!   that is not one of horizon's files (`attempt-*`). Anything else is kept, and the caller
//!   records the reason as a warning.
//! - [`create_owned_file`] creates one of horizon's own files (`attempt-N.metrics.jsonl`, ...)
//!   without following a symbolic link a trainer may have left under that name, and
//!   [`ensure_trial_dir`] refuses a trial directory that is not a real directory.
//!
//! What this does not defend against: a trainer runs as the same user as horizon and can delete
//! anything that user can by itself. The guarantee is that horizon is never the instrument: no
//! path a trainer writes makes horizon delete or write outside the directory it gave the trial.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// What [`remove_announced`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Deleted: the file, symbolic link or directory (with its contents) at this path.
    Removed(PathBuf),
    /// Nothing is there any more (the trainer removed it, or it was never written).
    Missing,
}

/// Why an announced path was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept(pub String);

impl std::fmt::Display for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a top-level name in a trial directory is one of horizon's own (`attempt-3.stderr`):
/// every name that starts with `attempt-` is reserved.
pub fn is_owned_name(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b"attempt-")
}

/// Delete the checkpoint a trainer announced at `announced` (relative to `trial_dir`, or
/// absolute), if and only if it resolves to a strict descendant of `trial_dir` that horizon does
/// not own. Paths containing `..` are kept whatever they resolve to: a trainer that names its
/// checkpoints by step has no reason to write one.
pub fn remove_announced(trial_dir: &Path, announced: &Path) -> Result<Removal, Kept> {
    let kept = |why: &str| Err(Kept(why.to_string()));
    if announced.as_os_str().is_empty() {
        return kept("the path is empty");
    }
    let canonical_dir = std::fs::canonicalize(trial_dir)
        .map_err(|e| Kept(format!("the trial directory {} cannot be resolved: {e}", trial_dir.display())))?;
    let relative = if announced.is_absolute() {
        match announced.strip_prefix(trial_dir).or_else(|_| announced.strip_prefix(&canonical_dir)) {
            Ok(rest) => rest,
            Err(_) => return kept("it is outside the trial directory"),
        }
    } else {
        announced
    };
    let mut names = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::CurDir => {}
            Component::ParentDir => return kept("it contains '..'"),
            Component::RootDir | Component::Prefix(_) => return kept("it is outside the trial directory"),
        }
    }
    let Some((last, parents)) = names.split_last() else {
        return kept("it names the trial directory itself");
    };
    let parent: PathBuf = parents.iter().fold(canonical_dir.clone(), |p, n| p.join(n));
    let canonical_parent = match std::fs::canonicalize(&parent) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Missing),
        Err(e) => return Err(Kept(format!("it cannot be resolved: {e}"))),
    };
    // `starts_with` compares whole components: `/a/trials/00001x` does not start with `.../00001`.
    if !canonical_parent.starts_with(&canonical_dir) {
        return kept("it resolves (through a symbolic link) to outside the trial directory");
    }
    if canonical_parent == canonical_dir && is_owned_name(last) {
        return kept("it is one of horizon's own files (attempt-*)");
    }
    let target = canonical_parent.join(last);
    let meta = match std::fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Missing),
        Err(e) => return Err(Kept(format!("it cannot be examined: {e}"))),
    };
    // A symbolic link is removed itself, never what it points to; a directory with its contents
    // (std's remove_dir_all does not follow links inside it).
    let removed = if meta.is_dir() { std::fs::remove_dir_all(&target) } else { std::fs::remove_file(&target) };
    match removed {
        Ok(()) => Ok(Removal::Removed(target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Removal::Missing),
        Err(e) => Err(Kept(format!("deleting {} failed: {e}", target.display()))),
    }
}

/// Create (or truncate) one of horizon's own files for writing. A symbolic link at `path` (a
/// trainer may have made one in its trial directory) is replaced by a new file, never followed.
pub fn create_owned_file(path: &Path) -> io::Result<File> {
    let open = || OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_NOFOLLOW).open(path);
    match open() {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            std::fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

/// The first `limit` bytes of a regular file a trainer could have replaced: no symbolic link is
/// followed and a FIFO or device is not read (`None`), so reading cannot block or run long.
pub fn read_small(path: &Path, limit: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = Vec::new();
    file.take(limit).read_to_end(&mut out).ok()?;
    Some(out)
}

/// Make sure `trial_dir` (`<study>/trials/00042`) is a real directory horizon can write into:
/// create it (and `trials/`) if missing, refuse it if a symbolic link or anything but a
/// directory is in its place (a trainer of another trial may have put one there).
pub fn ensure_trial_dir(trial_dir: &Path) -> io::Result<()> {
    if let Some(parent) = trial_dir.parent() {
        std::fs::create_dir_all(parent)?;
        refuse_unless_directory(parent)?;
    }
    match std::fs::create_dir(trial_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => refuse_unless_directory(trial_dir),
        Err(e) => Err(e),
    }
}

fn refuse_unless_directory(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        return Ok(());
    }
    let what = if meta.file_type().is_symlink() { "a symbolic link" } else { "not a directory" };
    Err(io::Error::other(format!(
        "{} is {what}; horizon writes only into directories it created (move it away and run again)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    /// A study directory with a database, a trial directory with horizon's files, a checkpoint,
    /// a sibling trial and a file outside the study.
    struct Sandbox {
        _root: tempfile::TempDir,
        root: PathBuf,
        trial: PathBuf,
    }

    impl Sandbox {
        fn new() -> Sandbox {
            let root_dir = tempfile::tempdir().unwrap();
            let root = root_dir.path().to_path_buf();
            let study = root.join("study");
            let trial = study.join("trials/00001");
            std::fs::create_dir_all(&trial).unwrap();
            std::fs::create_dir_all(study.join("trials/00002")).unwrap();
            std::fs::create_dir_all(root.join("elsewhere")).unwrap();
            for f in [
                study.join("horizon.db"),
                study.join("trials/00002/ckpt"),
                root.join("elsewhere/file"),
                trial.join("attempt-1.metrics.jsonl"),
                trial.join("attempt-1.stdout"),
                trial.join("attempt-1.stderr"),
            ] {
                std::fs::write(&f, "keep").unwrap();
            }
            Sandbox { _root: root_dir, root, trial }
        }

        /// Everything that must survive any announcement.
        fn protected(&self) -> Vec<PathBuf> {
            vec![
                self.root.join("study/horizon.db"),
                self.root.join("study/trials/00002/ckpt"),
                self.root.join("elsewhere/file"),
                self.trial.join("attempt-1.metrics.jsonl"),
                self.trial.join("attempt-1.stdout"),
                self.trial.join("attempt-1.stderr"),
            ]
        }

        fn assert_intact(&self, what: &str) {
            assert!(self.trial.is_dir(), "{what}: the trial directory is gone");
            for p in self.protected() {
                assert!(p.is_file(), "{what}: {} was deleted", p.display());
            }
        }
    }

    #[test]
    fn the_reported_attacks_are_kept() {
        let s = Sandbox::new();
        for announced in [
            "../../horizon.db",
            "../../../elsewhere/file",
            ".",
            "",
            "./",
            "..",
            "../00002/ckpt",
            "attempt-1.stdout",
            "./attempt-1.stderr",
        ] {
            let r = remove_announced(&s.trial, Path::new(announced));
            assert!(r.is_err(), "{announced:?} was acted on: {r:?}");
            s.assert_intact(announced);
        }
        let abs = s.root.join("elsewhere/file");
        assert!(remove_announced(&s.trial, &abs).is_err());
        let abs_db = s.trial.join("../../horizon.db");
        assert!(remove_announced(&s.trial, &abs_db).is_err());
        assert!(remove_announced(&s.trial, &s.trial).is_err());
        s.assert_intact("absolute paths");
    }

    #[test]
    fn symbolic_links_never_lead_outside() {
        let s = Sandbox::new();
        symlink(s.root.join("elsewhere"), s.trial.join("out")).unwrap();
        symlink(".", s.trial.join("here")).unwrap();
        symlink("../00002", s.trial.join("sibling")).unwrap();
        symlink(s.root.join("elsewhere/file"), s.trial.join("link-to-file")).unwrap();
        for announced in ["out/file", "here/attempt-1.stdout", "sibling/ckpt", "here/here/attempt-1.stderr"] {
            assert!(remove_announced(&s.trial, Path::new(announced)).is_err(), "{announced}");
            s.assert_intact(announced);
        }
        // A link itself is a descendant: it is removed, its target is not.
        assert_eq!(
            remove_announced(&s.trial, Path::new("link-to-file")),
            Ok(Removal::Removed(s.trial.canonicalize().unwrap().join("link-to-file")))
        );
        assert!(!s.trial.join("link-to-file").exists() && s.root.join("elsewhere/file").is_file());
        assert!(matches!(remove_announced(&s.trial, Path::new("out")), Ok(Removal::Removed(_))));
        s.assert_intact("links removed");
        // `here` (a link to the trial directory) resolves to a descendant named by a link:
        // removing `here/ckpt` removes the trial's own checkpoint, which is what it names.
        std::fs::write(s.trial.join("ckpt-5"), "x").unwrap();
        assert!(matches!(remove_announced(&s.trial, Path::new("here/ckpt-5")), Ok(Removal::Removed(_))));
        assert!(!s.trial.join("ckpt-5").exists());
    }

    #[test]
    fn real_checkpoints_are_deleted() {
        let s = Sandbox::new();
        std::fs::write(s.trial.join("ckpt-100.pt"), "x").unwrap();
        std::fs::create_dir_all(s.trial.join("ckpt-200/inner")).unwrap();
        std::fs::write(s.trial.join("ckpt-200/inner/w"), "x").unwrap();
        std::fs::create_dir_all(s.trial.join("sub")).unwrap();
        std::fs::write(s.trial.join("sub/attempt-1.stdout"), "x").unwrap();
        assert!(matches!(remove_announced(&s.trial, Path::new("ckpt-100.pt")), Ok(Removal::Removed(_))));
        assert!(matches!(remove_announced(&s.trial, Path::new("./ckpt-200")), Ok(Removal::Removed(_))));
        // Reserved names are reserved at the top level only.
        assert!(matches!(remove_announced(&s.trial, Path::new("sub/attempt-1.stdout")), Ok(Removal::Removed(_))));
        let abs = s.trial.join("missing");
        assert_eq!(remove_announced(&s.trial, &abs), Ok(Removal::Missing));
        assert_eq!(remove_announced(&s.trial, Path::new("no/such/dir")), Ok(Removal::Missing));
        assert!(!s.trial.join("ckpt-100.pt").exists() && !s.trial.join("ckpt-200").exists());
        s.assert_intact("real checkpoints");
    }

    #[test]
    fn owned_files_replace_links_instead_of_following_them() {
        let s = Sandbox::new();
        let target = s.root.join("elsewhere/file");
        let path = s.trial.join("attempt-2.metrics.jsonl");
        symlink(&target, &path).unwrap();
        create_owned_file(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep", "the link's target was truncated");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
    }

    #[test]
    fn small_reads_refuse_links_and_fifos_and_stop_at_the_limit() {
        let s = Sandbox::new();
        std::fs::write(s.trial.join("big"), vec![b'7'; 1 << 20]).unwrap();
        assert_eq!(read_small(&s.trial.join("big"), 32).unwrap().len(), 32);
        symlink(s.root.join("elsewhere/file"), s.trial.join("link")).unwrap();
        assert_eq!(read_small(&s.trial.join("link"), 32), None);
        let fifo = s.trial.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(read_small(&fifo, 32), None, "a FIFO is not read (and does not block)");
    }

    #[test]
    fn a_trial_directory_must_be_a_real_directory() {
        let s = Sandbox::new();
        let next = s.root.join("study/trials/00003");
        symlink(s.root.join("elsewhere"), &next).unwrap();
        let e = ensure_trial_dir(&next).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        std::fs::write(s.root.join("study/trials/00004"), "").unwrap();
        assert!(ensure_trial_dir(&s.root.join("study/trials/00004")).unwrap_err().to_string().contains("not a directory"));
        ensure_trial_dir(&s.root.join("study/trials/00005")).unwrap();
        ensure_trial_dir(&s.root.join("study/trials/00005")).unwrap();
        assert!(s.root.join("study/trials/00005").is_dir());
    }

    mod hostile {
        use super::*;
        use proptest::prelude::*;

        /// Pieces of hostile paths: parent and current directories, the sandbox's real names,
        /// reserved names, links made by the sandbox, very long and non-UTF-8 names.
        fn piece() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(b"..".to_vec()),
                Just(b".".to_vec()),
                Just(b"".to_vec()),
                Just(b"trials".to_vec()),
                Just(b"00001".to_vec()),
                Just(b"00002".to_vec()),
                Just(b"study".to_vec()),
                Just(b"horizon.db".to_vec()),
                Just(b"elsewhere".to_vec()),
                Just(b"file".to_vec()),
                Just(b"ckpt".to_vec()),
                Just(b"attempt-1.stdout".to_vec()),
                Just(b"attempt-1.metrics.jsonl".to_vec()),
                Just(b"out".to_vec()),
                Just(b"here".to_vec()),
                Just(b"up".to_vec()),
                Just(vec![b'x'; 300]),
                Just(vec![0xff, 0xfe, b'.', b'.']),
                Just(b"..\xff".to_vec()),
                proptest::collection::vec(any::<u8>().prop_filter("no NUL or slash", |b| *b != 0 && *b != b'/'), 1..12),
            ]
        }

        fn hostile_path() -> impl Strategy<Value = (bool, Vec<Vec<u8>>)> {
            (any::<bool>(), proptest::collection::vec(piece(), 0..8))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
            #[test]
            fn nothing_outside_the_trial_or_of_horizon_is_ever_deleted((absolute, pieces) in hostile_path()) {
                let s = Sandbox::new();
                symlink(s.root.join("elsewhere"), s.trial.join("out")).unwrap();
                symlink(".", s.trial.join("here")).unwrap();
                symlink("..", s.trial.join("up")).unwrap();
                let mut bytes = if absolute { s.trial.as_os_str().as_bytes().to_vec() } else { Vec::new() };
                for p in &pieces {
                    if !bytes.is_empty() {
                        bytes.push(b'/');
                    }
                    bytes.extend_from_slice(p);
                }
                let announced = PathBuf::from(OsStr::from_bytes(&bytes));
                let _ = remove_announced(&s.trial, &announced);
                s.assert_intact(&format!("{announced:?}"));
            }
        }
    }
}
