use super::*;
use bytes::Bytes;
use media::{AudioCodec, OpaqueCodec, VideoCodec};

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");
const ASC: &[u8] = include_bytes!("../../../testdata/aac-48k-stereo.asc");

fn info() -> MediaInfo {
    MediaInfo {
        video: Some(VideoCodec::H264(
            AvcConfig::parse(Bytes::from_static(AVCC)).unwrap(),
        )),
        audio: Some(AudioCodec::Aac(
            AacConfig::parse(Bytes::from_static(ASC)).unwrap(),
        )),
        framerate: None,
    }
}

#[test]
fn describe_real_configs_exact() {
    // Expected values computed outside Rust: profile-level-id is SPS bytes 1..4 (42 c0 0d),
    // sprop-parameter-sets is Python's base64 of the SPS/PPS in the record, config is the ASC
    // file in hex, and the id is FNV-1a 32 of the media sections.
    let expected = "v=0\r\n\
        o=- 4095379469 4095379469 IN IP4 192.0.2.10\r\n\
        s=live/cam1\r\n\
        c=IN IP4 0.0.0.0\r\n\
        t=0 0\r\n\
        a=control:*\r\n\
        m=video 0 RTP/AVP 96\r\n\
        a=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1;profile-level-id=42C00D;\
        sprop-parameter-sets=Z0LADdkBQfsBEAAAAwAQAAADAyDxQqSA,aMuDyyA=\r\n\
        a=control:trackID=0\r\n\
        m=audio 0 RTP/AVP 97\r\n\
        a=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
        a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;\
        indexdeltalength=3;config=119056E500\r\n\
        a=control:trackID=1\r\n";
    assert_eq!(describe(&info(), "live/cam1", "192.0.2.10"), expected);
}

#[test]
fn describe_leaves_out_unsupported_and_sanitizes() {
    let mut info = info();
    info.audio = Some(AudioCodec::Opaque {
        codec: OpaqueCodec::FlvId(2),
        sequence_header: None,
    });
    let sdp = describe(&info, "a\r\nm=audio 0 RTP/AVP 0", "::1");
    assert!(sdp.contains("s=a  m=audio 0 RTP/AVP 0\r\n"), "{sdp}");
    assert_eq!(
        sdp.matches("\r\nm=").count(),
        1,
        "only the video track: {sdp}"
    );
    assert!(sdp.contains("IN IP6 ::1\r\n"));
    assert!(sdp.contains("c=IN IP6 ::\r\n"));

    let empty = describe(&MediaInfo::default(), "", "10.0.0.1");
    assert!(empty.contains("s= \r\n"));
    assert!(!empty.contains("m="));
    // Every line ends in CRLF and there is no bare LF.
    assert_eq!(empty.matches('\n').count(), empty.matches("\r\n").count());
}

#[test]
fn origin_version_changes_with_config() {
    let a = describe(&info(), "x", "127.0.0.1");
    let mut other = info();
    if let Some(VideoCodec::H264(c)) = &mut other.video {
        c.pps = vec![Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80])];
    }
    let b = describe(&other, "x", "127.0.0.1");
    assert_ne!(a.lines().nth(1), b.lines().nth(1));
    assert_eq!(a, describe(&info(), "x", "127.0.0.1"), "deterministic");
}

#[test]
fn base64_rfc4648_vectors() {
    // RFC 4648 10 test vectors.
    for (input, output) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), output);
    }
    assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    assert_eq!(base64(&[0, 0, 0]), "AAAA");
}
