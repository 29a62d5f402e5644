//! Collect into memory up to a threshold, past it into a `scoped-temp` file.

use std::io::{Seek, SeekFrom};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::io::AsyncWriteExt;

use crate::{Bounded, Error, Limits};

/// Where [`collect_or_spill`] put the bytes.
#[derive(Debug)]
#[non_exhaustive]
pub enum Spilled {
    /// Small enough to keep in memory.
    Memory(Bytes),
    /// Past the memory threshold: a temp file, positioned at its start, removed when
    /// dropped (and by `scoped_temp::remove_all`, and by an orphan sweep after a crash).
    File {
        /// The file.
        file: scoped_temp::NamedTempFile,
        /// Its length in bytes.
        len: u64,
    },
}

/// Options for [`collect_or_spill`].
#[derive(Debug, Clone)]
pub struct SpillOptions {
    memory: usize,
    limits: Limits,
    root: Option<PathBuf>,
}

impl SpillOptions {
    /// Keep up to `memory` bytes in memory, spill past it, fail past `limits`.
    pub fn new(memory: usize, limits: Limits) -> Self {
        SpillOptions {
            memory,
            limits,
            root: None,
        }
    }

    /// Where to create the spill file (default: `scoped-temp`'s default root).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self
    }
}

/// Collects `stream`: in memory while it is at most the threshold, then into a temp
/// file; fails with [`Error::TooLarge`] past the hard cap, removing the file. Memory
/// held is at most the threshold plus one chunk.
pub async fn collect_or_spill<S, E>(stream: S, options: &SpillOptions) -> Result<Spilled, Error>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut stream = std::pin::pin!(Bounded::new(stream, &options.limits));
    let mut memory = BytesMut::new();
    let mut spill: Option<(scoped_temp::NamedTempFile, tokio::fs::File)> = None;
    let mut len: u64 = 0;
    while let Some(chunk) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        let chunk = chunk?;
        len += chunk.len() as u64;
        if spill.is_none() && memory.len() + chunk.len() <= options.memory {
            memory.extend_from_slice(&chunk);
            continue;
        }
        if spill.is_none() {
            let mut builder = scoped_temp::Builder::new();
            builder.prefix(".spill-");
            if let Some(root) = &options.root {
                builder.root(root);
            }
            let file = builder.tempfile()?;
            let writer = file.as_file().try_clone().map_err(|e| io_error(&file, e))?;
            let mut writer = tokio::fs::File::from_std(writer);
            writer
                .write_all(&memory)
                .await
                .map_err(|e| io_error(&file, e))?;
            memory = BytesMut::new();
            spill = Some((file, writer));
        }
        if let Some((file, writer)) = spill.as_mut() {
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| io_error(file, e))?;
        }
    }
    match spill {
        None => Ok(Spilled::Memory(memory.freeze())),
        Some((mut file, mut writer)) => {
            writer.flush().await.map_err(|e| io_error(&file, e))?;
            drop(writer);
            file.as_file_mut()
                .seek(SeekFrom::Start(0))
                .map_err(|e| io_error(&file, e))?;
            Ok(Spilled::File { file, len })
        }
    }
}

fn io_error(file: &scoped_temp::NamedTempFile, source: std::io::Error) -> Error {
    Error::Io {
        what: file.path().display().to_string(),
        source,
    }
}
