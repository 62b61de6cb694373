use super::*;
use bytes::Bytes;
use media::{AudioCodec, OpaqueCodec, VideoCodec};

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");
const ASC: &[u8] = include_bytes!("../../../testdata/aac-48k-stereo.asc");

fn info() -> MediaInfo {
    MediaInfo {
        video_metadata: None,
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

const HVCC: &[u8] = include_bytes!("../../../testdata/hevc-1280x720-main.hvcc");
const HVCC_MAIN10: &[u8] = include_bytes!("../../../testdata/hevc-640x360-main10.hvcc");
const OPUS_HEAD: &[u8] = include_bytes!("../../../testdata/opus-48k-stereo.opushead");
const OPUS_HEAD_51: &[u8] = include_bytes!("../../../testdata/opus-48k-5.1.opushead");
const AV1C: &[u8] = include_bytes!("../../../testdata/av1-640x360-main.av1c");

fn hevc_opus_info() -> MediaInfo {
    MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::H265(
            HevcConfig::parse(Bytes::from_static(HVCC)).unwrap(),
        )),
        audio: Some(AudioCodec::Opus(
            OpusConfig::parse(Bytes::from_static(OPUS_HEAD)).unwrap(),
        )),
        framerate: None,
    }
}

#[test]
fn describe_h265_and_opus_exact() {
    // Expected values computed outside Rust: the sprop values are Python's base64 of the VPS,
    // SPS and PPS arrays of the hvcC record (its SEI array is not announced), profile-id and
    // level-id are its general_profile_idc 1 and general_level_idc 93, and the id is FNV-1a
    // 32 of the media sections.
    let expected = "v=0\r\n\
        o=- 2076705248 2076705248 IN IP4 192.0.2.10\r\n\
        s=live/hevc\r\n\
        c=IN IP4 0.0.0.0\r\n\
        t=0 0\r\n\
        a=control:*\r\n\
        m=video 0 RTP/AVP 96\r\n\
        a=rtpmap:96 H265/90000\r\n\
        a=fmtp:96 profile-id=1; tier-flag=0; level-id=93; \
        sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwBdlZQJ; \
        sprop-sps=QgEBAWAAAAMAkAAAAwAAAwBdoAKAgC0WWVlSkwvAWgIAAAMAAgAAAwA8EA==; \
        sprop-pps=RAHAc8GJ\r\n\
        a=control:trackID=0\r\n\
        m=audio 0 RTP/AVP 97\r\n\
        a=rtpmap:97 opus/48000/2\r\n\
        a=fmtp:97 sprop-stereo=1\r\n\
        a=control:trackID=1\r\n";
    assert_eq!(
        describe(&hevc_opus_info(), "live/hevc", "192.0.2.10"),
        expected
    );
}

#[test]
fn describe_h265_sprop_values_are_the_parameter_sets() {
    use base64::Engine as _;
    let mut info = hevc_opus_info();
    let Some(VideoCodec::H265(cfg)) = &mut info.video else {
        unreachable!()
    };
    // Two SPS: RFC 7798 7.1 lists several sets of one kind comma-separated.
    cfg.sps.push(Bytes::from_static(&[0x42, 0x01, 0x02]));
    let cfg = cfg.clone();
    let sdp = describe(&info, "x", "127.0.0.1");
    let fmtp = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=fmtp:96 "))
        .unwrap();
    let params: Vec<(&str, &str)> = fmtp
        .split("; ")
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let decode = |name: &str| -> Vec<Vec<u8>> {
        let value = params.iter().find(|(k, _)| *k == name).unwrap().1;
        value
            .split(',')
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
            .collect()
    };
    assert_eq!(decode("sprop-vps"), [cfg.vps[0].to_vec()]);
    assert_eq!(
        decode("sprop-sps"),
        [cfg.sps[0].to_vec(), vec![0x42, 0x01, 0x02]]
    );
    assert_eq!(decode("sprop-pps"), [cfg.pps[0].to_vec()]);
    // NAL unit types, with the 2-byte NAL header kept.
    assert_eq!(decode("sprop-vps")[0][0] >> 1, 32);

    // Main 10 (profile 2), level 2.1.
    info.video = Some(VideoCodec::H265(
        HevcConfig::parse(Bytes::from_static(HVCC_MAIN10)).unwrap(),
    ));
    let sdp = describe(&info, "x", "127.0.0.1");
    assert!(
        sdp.contains("a=fmtp:96 profile-id=2; tier-flag=0; level-id=63; sprop-vps="),
        "{sdp}"
    );
}

#[test]
fn describe_opus_mono_and_multistream() {
    let mut info = hevc_opus_info();
    info.video = None;
    info.audio = Some(AudioCodec::Opus(OpusConfig::default_for_channels(1)));
    let sdp = describe(&info, "x", "127.0.0.1");
    assert!(
        sdp.ends_with(
            "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:trackID=1\r\n"
        ),
        "mono: still /2 (RFC 7587 7), no sprop-stereo: {sdp}"
    );
    assert_eq!(RtpFormat::audio(&info), Some(RtpFormat::Opus));

    // 5.1 is several Opus streams per packet: RFC 7587 has no mapping for it.
    let surround = OpusConfig::parse(Bytes::from_static(OPUS_HEAD_51)).unwrap();
    assert_eq!(opus_stereo(&surround), None);
    info.audio = Some(AudioCodec::Opus(surround));
    assert!(!describe(&info, "x", "127.0.0.1").contains("m="));
    assert_eq!(RtpFormat::audio(&info), None);

    // A mapping table with one coupled stream is plain stereo.
    let mut one_stream = OpusConfig::default_for_channels(2);
    one_stream.mapping_family = 1;
    one_stream.mapping = Some((1, 1, vec![0, 1]));
    assert_eq!(opus_stereo(&one_stream), Some(true));
}

#[test]
fn formats_and_codecs_without_a_mapping() {
    let hevc = hevc_opus_info();
    assert_eq!(RtpFormat::video(&hevc), Some(RtpFormat::H265));
    assert_eq!(RtpFormat::of_track(&hevc, 0).unwrap().clock_rate(), 90_000);
    assert_eq!(RtpFormat::of_track(&hevc, 1).unwrap().clock_rate(), 48_000);
    assert_eq!(RtpFormat::of_track(&hevc, 2), None);
    assert_eq!(
        RtpFormat::audio(&info()),
        Some(RtpFormat::Aac {
            sample_rate: 48_000
        })
    );
    assert_eq!(RtpFormat::H264.clock_rate(), 90_000);

    // AV1 is described (AOM RTP payload format), with profile, level and tier; opaque audio
    // is left out like any codec without a mapping.
    let av1 = MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::Av1(
            media::Av1Config::parse(Bytes::from_static(AV1C)).unwrap(),
        )),
        audio: Some(AudioCodec::Opaque {
            codec: OpaqueCodec::FlvId(2),
            sequence_header: None,
        }),
        framerate: None,
    };
    assert_eq!(RtpFormat::video(&av1), Some(RtpFormat::Av1));
    assert_eq!(RtpFormat::Av1.clock_rate(), 90_000);
    assert_eq!(RtpFormat::audio(&av1), None);
    let sdp = describe(&av1, "x", "127.0.0.1");
    assert_eq!(sdp.matches("\r\nm=").count(), 1, "{sdp}");
    assert!(
        sdp.contains("m=video 0 RTP/AVP 96\r\na=rtpmap:96 AV1/90000\r\na=fmtp:96 profile=0;"),
        "{sdp}"
    );
    assert!(sdp.contains(";tier=0\r\na=control:trackID=0\r\n"), "{sdp}");
    // AV1 with Opus: both tracks.
    let av1_opus = MediaInfo {
        audio: hevc_opus_info().audio,
        ..av1
    };
    let sdp = describe(&av1_opus, "x", "127.0.0.1");
    assert_eq!(sdp.matches("\r\nm=").count(), 2, "{sdp}");
    assert!(sdp.contains("m=audio 0 RTP/AVP 97\r\n"));
}
