//! A PostgreSQL server of a test's own, made with `initdb` in a temporary directory and
//! listening on a port of its own, so that a test can stop and restart it without
//! touching the server the rest of the suite shares.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The directory of the newest installed PostgreSQL's programs.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs in /usr/lib/postgresql (Debian's postgresql package)")
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("an installed initdb").1
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl PrivatePostgres {
    /// Creates the cluster and starts it.
    pub fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let server = PrivatePostgres {
            bin: bin_dir(),
            dir,
            port,
        };
        if is_root() {
            // PostgreSQL refuses to run as root: its files belong to `postgres`, which
            // must be able to reach them through the temporary directory (the suite's
            // own is 0700).
            use std::os::unix::fs::PermissionsExt;
            let temp = std::env::temp_dir();
            let mode = std::fs::metadata(&temp)
                .expect("the temporary directory")
                .permissions()
                .mode();
            if mode & 0o001 == 0 {
                std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode | 0o011))
                    .expect("let postgres through the temporary directory");
            }
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server.dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the private cluster's directory");
        }
        server.run(
            "initdb",
            &[
                "-D",
                &server.data().to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        server.start_again();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `program` of the cluster's PostgreSQL, run as `postgres` when this is root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let mut command = self.command(program);
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 \
             -c shared_preload_libraries=pg_stat_statements -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &self.log().to_string_lossy(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        self.wait_until_ready();
    }

    /// Stops the server at once, as a crash would: its clients' connections break in
    /// the middle of whatever they were doing.
    pub fn stop_immediately(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ],
        );
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the private PostgreSQL did not start: {}",
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}
