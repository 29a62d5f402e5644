//! A small service built on `leakproof`, for `leakproof-stress` to judge (the worked
//! example in the README), and a deliberately leaky variant of it (`--leak`).
//!
//! ```text
//! service [--leak] --once            one job, then exit
//! service [--leak] --serve PORTFILE  a job per connection on 127.0.0.1 until SIGTERM;
//!                                    the port is written to PORTFILE
//! service --request PORTFILE         one request to a serving instance (a load command)
//! ```
//!
//! A job, in a `leakproof` scope: a temp dir with a 1 MiB file, and `wc -c` on it as a
//! child process through a reaper. The clean variant runs under `leakproof::supervise()`
//! (a SIGKILL leaves nothing its supervisor does not remove), reclaims what a killed run
//! left in the temp dir when it starts, and drains its work on SIGTERM. The leaky one
//! also makes a temp dir it never removes, starts a `setsid sleep 600` it never ends,
//! keeps a descriptor and 256 KiB per job, and has no SIGTERM handling.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let leak = args.iter().any(|a| a == "--leak");
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
    };
    let mode = if args.iter().any(|a| a == "--once") {
        Mode::Once
    } else if let Some(file) = arg("--serve") {
        Mode::Serve(file)
    } else if let Some(file) = arg("--request") {
        Mode::Request(file)
    } else {
        eprintln!("usage: service [--leak] --once | --serve PORTFILE | --request PORTFILE");
        return ExitCode::from(2);
    };
    // The supervisor: should this process be SIGKILLed, what it started and the temp
    // entries it made are removed. It returns here in the program only.
    if !leak
        && !matches!(mode, Mode::Request(_))
        && let Err(e) = leakproof::supervise()
    {
        eprintln!("service: no supervisor: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("service: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match mode {
            Mode::Once if leak => leaky_job().await.map(|_| ()),
            Mode::Once => clean(None).await,
            Mode::Serve(file) if leak => leaky_serve(&file).await,
            Mode::Serve(file) => clean(Some(file)).await,
            Mode::Request(file) => request(&file).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Mode {
    Once,
    Serve(PathBuf),
    Request(PathBuf),
}

/// The clean service: one job (`None`) or a job per connection, under a `Shutdown`
/// that drains them on SIGTERM.
async fn clean(serve: Option<PathBuf>) -> Result<(), Error> {
    // What a killed run of ours left in the temp dir (its owner is dead): reclaimed.
    leakproof::temp::sweep_orphans(std::env::temp_dir())?;
    let shutdown = leakproof::Shutdown::builder()
        .deadline(Duration::from_secs(5))
        .build();
    shutdown.install_signals()?;
    let reaper = leakproof::proc::Reaper::new()?;
    shutdown.add_reaper(&reaper);
    match serve {
        None => {
            let (worker, reaper) = (shutdown.clone(), reaper.clone());
            shutdown.spawn("job", async move {
                let _ = worker.run("job", |scope| job(scope, reaper)).await;
                worker.trigger();
            })?;
        }
        Some(file) => {
            let listener = listen(&file).await?;
            let server = shutdown.clone();
            shutdown.spawn("accept", async move {
                let stop = server.token();
                loop {
                    let (mut socket, _) = tokio::select! {
                        _ = stop.cancelled() => return,
                        accepted = listener.accept() => match accepted {
                            Ok(pair) => pair,
                            Err(_) => continue,
                        },
                    };
                    let (worker, reaper) = (server.clone(), reaper.clone());
                    let _ = server.spawn("connection", async move {
                        let done = worker.run("job", |scope| job(scope, reaper)).await;
                        let line = match done {
                            Ok((Ok(bytes), _)) => format!("ok {bytes}\n"),
                            _ => "error\n".to_string(),
                        };
                        let _ = socket.write_all(line.as_bytes()).await;
                    });
                }
            })?;
        }
    }
    let report = shutdown.wait().await;
    std::process::exit(report.exit_code())
}

/// One job in its scope: a temp dir with a 1 MiB file, and `wc -c` on it.
async fn job(scope: leakproof::Scope, reaper: leakproof::proc::Reaper) -> Result<u64, Error> {
    let dir = scope.temp_dir()?;
    let file = dir.join("input.bin");
    tokio::fs::write(&file, vec![7u8; 1 << 20]).await?;
    let mut wc = Command::new("sh");
    wc.args(["-c", "sleep 0.05; wc -c < \"$1\"", "wc"])
        .arg(&file);
    let child = scope.spawn_child(&reaper, wc)?;
    let outcome = child.wait().await.ok_or("the scope ended the child")??;
    Ok(outcome.stdout.text().trim().parse()?)
}

/// The leaky job: the same work, and what a careless service forgets.
async fn leaky_job() -> Result<u64, Error> {
    let dir = std::env::temp_dir().join(format!("job-{}", std::process::id()));
    let _ = std::fs::create_dir(&dir);
    let file = dir.join("input.bin");
    tokio::fs::write(&file, vec![7u8; 1 << 20]).await?;
    // Forgotten: the dir, a daemon, a descriptor, 256 KiB.
    let _ = Command::new("setsid").args(["sleep", "600"]).spawn();
    std::mem::forget(std::fs::File::open("/dev/null")?);
    std::hint::black_box(Vec::leak(vec![1u8; 256 << 10]));
    let out = tokio::process::Command::new("sh")
        .args(["-c", "sleep 0.05; wc -c < \"$1\"", "wc"])
        .arg(&file)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or("0").parse()?)
}

async fn leaky_serve(file: &Path) -> Result<(), Error> {
    let listener = listen(file).await?;
    loop {
        let (mut socket, _) = listener.accept().await?;
        let bytes = leaky_job().await?;
        socket.write_all(format!("ok {bytes}\n").as_bytes()).await?;
    }
}

/// Listens on an ephemeral loopback port and writes it to `file` (through a rename, so
/// a reader never sees half of it).
async fn listen(file: &Path) -> Result<TcpListener, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let partial = file.with_extension("partial");
    std::fs::write(&partial, port.to_string())?;
    std::fs::rename(&partial, file)?;
    Ok(listener)
}

/// One request: waits up to 10 s for the port file, then expects `ok <bytes>`.
async fn request(file: &Path) -> Result<(), Error> {
    let mut tries = 0;
    let port: u16 = loop {
        match std::fs::read_to_string(file) {
            Ok(text) => break text.trim().parse()?,
            Err(_) if tries < 200 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("no port in {}: {e}", file.display()).into()),
        }
    };
    let socket = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut line = String::new();
    BufReader::new(socket).read_line(&mut line).await?;
    if line.starts_with("ok ") {
        Ok(())
    } else {
        Err(format!("answer: {line:?}").into())
    }
}
