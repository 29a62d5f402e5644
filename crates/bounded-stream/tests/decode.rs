//! Decompression under a budget, for every codec, against the same bombs.

use std::io;
use std::pin::Pin;

use async_compression::Level;
use async_compression::tokio::bufread as enc;
use bounded_stream::{
    Codec, DECODE_CHUNK, DecodeFailure, DecodeLimits, Error, Limits, Stage, collect_decoded, decode,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::ReaderStream;

const CODECS: [Codec; 5] = [
    Codec::Gzip,
    Codec::Deflate,
    Codec::Zlib,
    Codec::Zstd,
    Codec::Brotli,
];
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn encoder(
    codec: Codec,
    input: impl AsyncBufRead + Send + 'static,
) -> Pin<Box<dyn AsyncRead + Send>> {
    match codec {
        Codec::Gzip => Box::pin(enc::GzipEncoder::with_quality(input, Level::Fastest)),
        Codec::Deflate => Box::pin(enc::DeflateEncoder::with_quality(input, Level::Fastest)),
        Codec::Zlib => Box::pin(enc::ZlibEncoder::with_quality(input, Level::Fastest)),
        Codec::Zstd => Box::pin(enc::ZstdEncoder::with_quality(input, Level::Fastest)),
        Codec::Brotli => Box::pin(enc::BrotliEncoder::with_quality(input, Level::Fastest)),
        _ => unreachable!(),
    }
}

/// A bomb: `size` zero bytes, compressed lazily as the decoder pulls, so a 10 GiB bomb
/// costs only what is decoded before the cap stops it.
fn bomb(
    codec: Codec,
    size: u64,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let zeros = BufReader::new(tokio::io::repeat(0).take(size));
    ReaderStream::new(encoder(codec, zeros))
}

async fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encoder(codec, BufReader::new(io::Cursor::new(data.to_vec())))
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

fn once(data: Vec<u8>) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::iter([Ok(Bytes::from(data))])
}

/// Text that compresses like a log, not like zeros.
fn log_text(lines: usize) -> Vec<u8> {
    (0..lines)
        .flat_map(|i| {
            format!(
                "{i:08} INFO worker-{} handled request id={}\n",
                i % 7,
                i * 7919
            )
            .into_bytes()
        })
        .collect()
}

#[tokio::test]
async fn a_10_gib_bomb_is_stopped_just_past_the_cap_for_every_codec() {
    for codec in CODECS {
        let cap = MIB;
        let mut decoded = std::pin::pin!(decode(
            bomb(codec, 10 * GIB),
            codec,
            &DecodeLimits::new(Limits::new(cap))
        ));
        let mut passed = 0u64;
        let err = loop {
            match decoded.next().await {
                Some(Ok(chunk)) => passed += chunk.len() as u64,
                Some(Err(e)) => break e,
                None => panic!("{codec}: a 10 GiB bomb ended under a 1 MiB cap"),
            }
        };
        match err {
            Error::TooLarge {
                limit,
                received,
                stage: Stage::Decoded,
            } => {
                assert_eq!(limit, cap);
                assert!(
                    received <= cap + 64 * 1024,
                    "{codec}: decoded {received} before stopping"
                );
                assert!(
                    received <= cap + DECODE_CHUNK as u64,
                    "{codec}: overshoot above one chunk"
                );
            }
            other => panic!("{codec}: expected TooLarge, got {other:?}"),
        }
        assert!(
            passed <= cap,
            "{codec}: {passed} bytes passed on, over the cap"
        );
        assert!(
            decoded.encoded() < cap,
            "{codec}: {} compressed bytes consumed",
            decoded.encoded()
        );
    }
}

#[tokio::test]
async fn the_expansion_ratio_stops_a_bomb_early_for_every_codec() {
    for codec in CODECS {
        let budget = DecodeLimits::new(Limits::new(GIB)).max_ratio(100, 100 * 1024);
        match collect_decoded(bomb(codec, 10 * GIB), codec, &budget).await {
            Err(Error::ExpansionRatio {
                limit: 100,
                decoded,
                encoded,
            }) => {
                // Tripped by the first decoded chunk past 100x what had been consumed
                // (compressed bytes are pulled a wire chunk at a time).
                assert!(decoded > 100 * encoded && decoded > 100 * 1024, "{codec}");
                assert!(
                    decoded <= 100 * encoded.max(1024) + DECODE_CHUNK as u64,
                    "{codec}: {decoded} from {encoded}"
                );
                assert!(
                    decoded < MIB,
                    "{codec}: {decoded} decoded before the ratio stopped it"
                );
            }
            other => panic!("{codec}: expected ExpansionRatio, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ordinary_data_round_trips_within_budget_for_every_codec() {
    let text = log_text(20_000); // About 1 MiB.
    for codec in CODECS {
        let compressed = compress(codec, &text).await;
        let budget = DecodeLimits::new(Limits::new(text.len() as u64)).max_ratio(100, 100 * 1024);
        let got = collect_decoded(once(compressed), codec, &budget)
            .await
            .unwrap();
        assert_eq!(got.to_bytes(), text, "{codec}");
        assert!(!got.truncated());
    }
}

#[tokio::test]
async fn truncate_mode_keeps_exactly_the_cap_of_a_bomb() {
    for codec in CODECS {
        let budget = DecodeLimits::new(Limits::new(MIB + 123).truncate());
        let got = collect_decoded(bomb(codec, 10 * GIB), codec, &budget)
            .await
            .unwrap();
        assert_eq!(got.len(), MIB + 123, "{codec}");
        assert!(got.truncated(), "{codec}");
    }
}

#[tokio::test]
async fn truncated_input_is_a_typed_error_for_every_codec() {
    let text = log_text(5_000);
    for codec in CODECS {
        let mut compressed = compress(codec, &text).await;
        compressed.truncate(compressed.len() / 2);
        let half = compressed.len() as u64;
        match collect_decoded(
            once(compressed),
            codec,
            &DecodeLimits::new(Limits::new(GIB)),
        )
        .await
        {
            Err(Error::Decode {
                codec: c,
                failure: DecodeFailure::Truncated,
                encoded,
                ..
            }) => {
                assert_eq!(c, codec);
                assert_eq!(encoded, half);
            }
            other => panic!("{codec}: expected a Truncated decode error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn corrupt_input_is_a_typed_error_for_every_codec() {
    for codec in CODECS {
        let garbage = b"\xff\xff\xff\xff this is not compressed data at all \xff\xff".to_vec();
        match collect_decoded(once(garbage), codec, &DecodeLimits::new(Limits::new(GIB))).await {
            Err(Error::Decode {
                codec: c,
                failure: DecodeFailure::Corrupt,
                ..
            }) => assert_eq!(c, codec),
            other => panic!("{codec}: expected a Corrupt decode error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn concatenated_gzip_members_and_zstd_frames_are_all_decoded() {
    for codec in [Codec::Gzip, Codec::Zstd] {
        let mut both = compress(codec, b"first member\n").await;
        both.extend(compress(codec, b"second member\n").await);
        let got = collect_decoded(once(both), codec, &DecodeLimits::new(Limits::new(1000)))
            .await
            .unwrap();
        assert_eq!(
            &got.to_bytes()[..],
            b"first member\nsecond member\n",
            "{codec}"
        );
    }
}

#[tokio::test]
async fn a_zstd_window_larger_than_the_budget_allows_is_refused() {
    use async_compression::zstd::CParameter;
    // A streamed frame (no content size) declaring a 128 MiB window.
    let params = [
        CParameter::window_log(27),
        CParameter::enable_long_distance_matching(true),
    ];
    let input = BufReader::new(io::Cursor::new(log_text(1_000)));
    let mut compressed = Vec::new();
    enc::ZstdEncoder::with_quality_and_params(input, Level::Fastest, &params)
        .read_to_end(&mut compressed)
        .await
        .unwrap();
    let small = DecodeLimits::new(Limits::new(MIB));
    assert_eq!(small.zstd_window_log(), 23);
    match collect_decoded(once(compressed.clone()), Codec::Zstd, &small).await {
        Err(Error::Decode {
            failure: DecodeFailure::Corrupt,
            ..
        }) => {}
        other => panic!("expected the 128 MiB window refused, got {other:?}"),
    }
    // A budget big enough for that window decodes it.
    let large = DecodeLimits::new(Limits::new(128 * MIB));
    assert_eq!(large.zstd_window_log(), 27);
    assert!(
        collect_decoded(once(compressed), Codec::Zstd, &large)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_wire_cap_applies_to_compressed_bytes() {
    let compressed = compress(Codec::Gzip, &log_text(5_000)).await;
    let budget = DecodeLimits::new(Limits::new(GIB)).wire(Limits::new(1000));
    match collect_decoded(once(compressed), Codec::Gzip, &budget).await {
        Err(Error::TooLarge {
            limit: 1000,
            stage: Stage::Wire,
            ..
        }) => {}
        other => panic!("expected a wire TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failing_source_under_the_decoder_keeps_its_error() {
    let compressed = compress(Codec::Gzip, &log_text(5_000)).await;
    let parts = vec![
        Ok(Bytes::copy_from_slice(&compressed[..100])),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer reset")),
    ];
    match collect_decoded(
        futures_util::stream::iter(parts),
        Codec::Gzip,
        &DecodeLimits::new(Limits::new(GIB)),
    )
    .await
    {
        Err(Error::Source {
            received: 100,
            source,
        }) => assert_eq!(source.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected the source's error, got {other:?}"),
    }
}

#[tokio::test]
async fn http_deflate_takes_zlib_and_the_raw_deflate_some_servers_send() {
    let text = log_text(2_000);
    for wrapped in [Codec::Zlib, Codec::Deflate] {
        let wire = compress(wrapped, &text).await;
        // Both arrive labelled `Content-Encoding: deflate`, one byte per chunk at first.
        let (head, rest) = wire.split_at(1);
        let chunks = futures_util::stream::iter([
            Ok::<_, io::Error>(Bytes::copy_from_slice(head)),
            Ok(Bytes::copy_from_slice(rest)),
        ]);
        let codec = Codec::from_content_encoding("Deflate").unwrap();
        let budget = DecodeLimits::new(Limits::new(MIB));
        let decoded = collect_decoded(chunks, codec, &budget).await.unwrap();
        assert_eq!(decoded.to_bytes(), text, "{wrapped:?} as HTTP deflate");
    }
}

#[test]
fn content_encodings_map_to_codecs_and_accept_encoding_names_only_what_decodes() {
    assert_eq!(Codec::from_content_encoding("gzip"), Some(Codec::Gzip));
    assert_eq!(Codec::from_content_encoding(" X-GZIP "), Some(Codec::Gzip));
    assert_eq!(Codec::from_content_encoding("br"), Some(Codec::Brotli));
    assert_eq!(Codec::from_content_encoding("zstd"), Some(Codec::Zstd));
    assert_eq!(Codec::from_content_encoding("deflate"), Some(Codec::Zlib));
    for none in ["identity", "gzip, br", "compress", ""] {
        assert_eq!(Codec::from_content_encoding(none), None, "{none}");
    }
    // The tests build every codec.
    assert_eq!(Codec::accept_encoding(), "gzip, deflate, br, zstd");
}
