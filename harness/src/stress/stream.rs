//! `bounded-stream` scenarios: a huge CI log searched in bounded memory, and a bomb per
//! codec stopped at the cap.

use std::io::{BufWriter, Write};
use std::pin::Pin;
use std::time::Instant;

use async_compression::Level;
use async_compression::tokio::bufread as enc;
use bounded_stream::{Codec, DecodeLimits, Error, Limits, Stage, decode};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, BufReader};

use super::{Profile, Scenario, reset_peak_rss, rss_kib};
use crate::Result;

const MIB: u64 = 1 << 20;

pub async fn scenarios(profile: Profile) -> Result<Vec<Scenario>> {
    Ok(vec![log_scan(profile).await?, bombs(profile).await?])
}

/// Writes a CI-like log of about `size` bytes with one `warning:` line near the end.
fn write_log(file: &mut std::fs::File, size: u64) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut written = 0;
    let mut i = 0u64;
    while written < size {
        let line = format!(
            "2026-11-23T12:00:{:02}Z [build] step {i}: compiling crate-{} ... ok\n",
            i % 60,
            i % 997
        );
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
        i += 1;
        if written >= size - size / 64 && written < size - size / 64 + line.len() as u64 {
            let warn = "2026-11-23T12:59:59Z [build] warning: unused variable `x` in crate-42\n";
            out.write_all(warn.as_bytes())?;
            written += warn.len() as u64;
        }
    }
    out.flush()?;
    Ok(written)
}

async fn log_scan(profile: Profile) -> Result<Scenario> {
    let size = profile.pick(1024, 128) as u64 * MIB;
    let mut file = scoped_temp::NamedTempFile::new()?;
    let path = file.path().to_path_buf();
    let started = Instant::now();
    let written = tokio::task::block_in_place(|| write_log(file.as_file_mut(), size))?;
    let wrote_in = started.elapsed();

    let baseline_kib = rss_kib().0;
    let reset = reset_peak_rss();
    let started = Instant::now();
    let reader = tokio::fs::File::open(&path).await?;
    let found = bounded_stream::find_line(reader, b"warning:", 64 * 1024).await?;
    let scanned_in = started.elapsed();
    let peak_kib = rss_kib().1;
    let over_baseline_mib = peak_kib.saturating_sub(baseline_kib) as f64 / 1024.0;
    file.close().await?;

    let mut s = Scenario::new(format!(
        "bounded-stream: search a {} MiB CI log for `warning:`",
        written / MIB
    ));
    s.note(format!(
        "log written in {:.1} s, scanned in {:.1} s ({:.2} GB/s); RSS baseline {:.1} MiB, peak {:.1} MiB{}",
        wrote_in.as_secs_f64(),
        scanned_in.as_secs_f64(),
        written as f64 / scanned_in.as_secs_f64() / 1e9,
        baseline_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0,
        if reset { "" } else { " (VmHWM could not be reset: peak is since process start)" }
    ));
    let line = found
        .as_ref()
        .map(|m| String::from_utf8_lossy(&m.line[..m.line.len().min(40)]).into_owned())
        .unwrap_or_default();
    s.check(
        "the warning line was found",
        found.is_some(),
        format!("{line:?}"),
    );
    s.check(
        "peak RSS under 15 MB above baseline",
        over_baseline_mib < 15.0,
        format!("+{over_baseline_mib:.1} MiB"),
    );
    s.check(
        "the log's temp file was reclaimed",
        !path.exists(),
        path.display().to_string(),
    );
    Ok(s)
}

fn encoder(
    codec: Codec,
    input: impl AsyncBufRead + Send + 'static,
) -> Pin<Box<dyn AsyncRead + Send>> {
    match codec {
        Codec::Gzip => Box::pin(enc::GzipEncoder::with_quality(input, Level::Fastest)),
        Codec::Deflate => Box::pin(enc::DeflateEncoder::with_quality(input, Level::Fastest)),
        Codec::Zstd => Box::pin(enc::ZstdEncoder::with_quality(input, Level::Fastest)),
        _ => Box::pin(enc::BrotliEncoder::with_quality(input, Level::Fastest)),
    }
}

async fn bombs(profile: Profile) -> Result<Scenario> {
    let bomb_size: u64 = 10 << 30;
    let cap = profile.pick(64, 16) as u64 * MIB;
    let mut s = Scenario::new(format!(
        "bounded-stream: a 10 GiB decompression bomb per codec against a {} MiB cap",
        cap / MIB
    ));
    for codec in [Codec::Gzip, Codec::Deflate, Codec::Zstd, Codec::Brotli] {
        // The bomb is compressed lazily as the decoder pulls it: only what is decoded
        // before the cap stops it is ever produced.
        let zeros = BufReader::new(tokio::io::repeat(0).take(bomb_size));
        let wire = tokio_util::io::ReaderStream::new(encoder(codec, zeros));
        let baseline_kib = rss_kib().0;
        reset_peak_rss();
        let started = Instant::now();
        let mut decoded = std::pin::pin!(decode(wire, codec, &DecodeLimits::new(Limits::new(cap))));
        let mut outcome = None;
        while let Some(item) =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(decoded.as_mut(), cx)).await
        {
            if let Err(e) = item {
                outcome = Some(e);
                break;
            }
        }
        let encoded = decoded.encoded();
        let peak_over = rss_kib().1.saturating_sub(baseline_kib) as f64 / 1024.0;
        let (ok, observed) = match outcome {
            Some(Error::TooLarge {
                received,
                stage: Stage::Decoded,
                ..
            }) => (
                received <= cap + 64 * 1024,
                format!(
                    "stopped at {received} decoded bytes (cap + {} B) from {encoded} compressed, {:.0} ms, peak RSS +{peak_over:.1} MiB",
                    received - cap,
                    started.elapsed().as_secs_f64() * 1e3
                ),
            ),
            Some(other) => (false, format!("wrong error: {other}")),
            None => (false, "the bomb was not stopped".into()),
        };
        s.check(
            &format!("{codec} bomb rejected within cap + 64 KiB"),
            ok,
            observed,
        );
    }
    Ok(s)
}
