//! Builders for the packages the tests scan: every file format is written here, byte by byte,
//! so the tests need no binary fixtures. Planted secrets are assembled at run time so this
//! source holds no string that a secret scanner would flag.
#![allow(dead_code)]

use std::io::Write as _;

/// Deterministic xorshift generator: the same "random" secrets on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

pub const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const HEX: &[u8] = b"0123456789abcdef";
pub const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One secret of each kind, made at run time.
pub struct Secrets {
    pub google: String,
    pub google_manifest: String,
    pub google_arsc: String,
    pub google_ios: String,
    pub firebase_key: String,
    pub firebase_url: String,
    pub aws_id: String,
    pub aws_secret: String,
    pub stripe_secret: String,
    pub stripe_restricted: String,
    pub stripe_publishable: String,
    pub twilio_sid: String,
    pub twilio_token: String,
    pub twilio_token_dex: String,
    pub slack_token: String,
    pub slack_webhook: String,
    pub github_classic: String,
    pub github_fine: String,
    pub jwt: String,
    pub basic_url: String,
    pub basic_password: String,
    pub entropy_named: String,
    pub entropy_bare: String,
}

pub fn github_classic(rng: &mut Rng) -> String {
    let random = rng.pick(BASE62, 30);
    let mut n = crc32fast::hash(random.as_bytes());
    let mut check = [b'0'; 6];
    for slot in check.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    format!("gh{}_{random}{}", "p", String::from_utf8_lossy(&check))
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

impl Secrets {
    pub fn new() -> Self {
        let mut rng = Rng::new(0x5eed_2024);
        let aiza = |rng: &mut Rng| format!("AI{}{}", "za", rng.pick(B64URL, 35));
        let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = b64url(br#"{"sub":"reporting-service","iss":"https://api.partner.example"}"#);
        let basic_password = format!("Tr0ub4{}", rng.pick(BASE62, 10));
        Self {
            google: aiza(&mut rng),
            google_manifest: aiza(&mut rng),
            google_arsc: aiza(&mut rng),
            google_ios: aiza(&mut rng),
            firebase_key: aiza(&mut rng),
            firebase_url: "https://moat-demo-4821.firebaseio.com".to_owned(),
            aws_id: format!(
                "AK{}{}",
                "IA",
                rng.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
            ),
            aws_secret: rng.pick(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+",
                40,
            ),
            stripe_secret: format!("sk_{}_{}", "live", rng.pick(BASE62, 32)),
            stripe_restricted: format!("rk_{}_{}", "live", rng.pick(BASE62, 32)),
            stripe_publishable: format!("pk_{}_{}", "live", rng.pick(BASE62, 32)),
            twilio_sid: format!("A{}{}", "C", rng.pick(HEX, 32)),
            twilio_token: rng.pick(HEX, 32),
            twilio_token_dex: rng.pick(HEX, 32),
            slack_token: format!(
                "xo{}-{}-{}-{}",
                "xb",
                rng.pick(b"0123456789", 12),
                rng.pick(b"0123456789", 13),
                rng.pick(BASE62, 24)
            ),
            slack_webhook: format!(
                "https://hooks.{}.com/services/T{}/B{}/{}",
                "slack",
                rng.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 8),
                rng.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10),
                rng.pick(BASE62, 24)
            ),
            github_classic: github_classic(&mut rng),
            github_fine: format!(
                "github_{}_{}",
                "pat",
                rng.pick(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_",
                    82
                )
            ),
            jwt: format!("{header}.{payload}.{}", rng.pick(B64URL, 43)),
            basic_url: format!(
                "https://svc_reporting:{basic_password}@api.partner.example.com/v2/upload"
            ),
            basic_password,
            entropy_named: rng.pick(BASE62, 40),
            entropy_bare: rng.pick(BASE62, 32),
        }
    }
}

/// Strings that look random or secret-ish but are not secrets.
pub struct Decoys {
    pub uuid: String,
    pub sha256: String,
    pub sha1: String,
    pub png_base64: String,
    pub spki_base64: String,
    pub identifiers: Vec<String>,
    pub pem_header_constant: String,
    pub placeholder_url: String,
    pub alphabet: String,
}

impl Decoys {
    pub fn new() -> Self {
        use base64::Engine as _;
        let mut rng = Rng::new(77);
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend(rng.bytes(120));
        // A SubjectPublicKeyInfo: AlgorithmIdentifier + BIT STRING (public, random-looking).
        let mut spki_inner = der(
            0x30,
            &[
                der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
                der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
            ]
            .concat(),
        );
        let mut bits = vec![0x00, 0x04];
        bits.extend(rng.bytes(64));
        spki_inner.extend(der(0x03, &bits));
        let spki = der(0x30, &spki_inner);
        Self {
            uuid: "3f2504e0-4f89-41d3-9a0c-0305e82c3301".to_owned(),
            sha256: hex(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                b"https://example.com/terms",
            )
            .as_ref()),
            sha1: hex(&rng.bytes(20)),
            png_base64: base64::engine::general_purpose::STANDARD.encode(&png),
            spki_base64: base64::engine::general_purpose::STANDARD.encode(&spki),
            identifiers: vec![
                "Lcom/example/app/ui/settings/NotificationPreferencesFragment;".into(),
                "ConstraintLayout_Layout_layout_constraintBottom_toBottomOf".into(),
                "androidx.recyclerview.widget.RecyclerView$LayoutManager".into(),
                "kotlinx/coroutines/internal/LockFreeTaskQueueCore".into(),
                "AppCompatTheme_windowActionBarOverlay2".into(),
            ],
            pem_header_constant: format!("-----BEGIN RSA {} KEY-----", "PRIVATE"),
            placeholder_url: "https://user:password@example.com/login".into(),
            alphabet: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".into(),
        }
    }
}

/// DER TLV.
pub fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn der_int(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = rng.bytes(n);
    v[0] = (v[0] & 0x7f) | 0x40;
    der(0x02, &v)
}

/// A structurally valid PKCS#8 RSA private key (random numbers: the structure is what counts).
pub fn pkcs8_rsa(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut rsa = der(0x02, &[0]);
    for n in [128, 3, 128, 64, 64, 64, 64, 64] {
        rsa.extend(der_int(&mut rng, n));
    }
    let rsa = der(0x30, &rsa);
    let alg = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    der(0x30, &[der(0x02, &[0]), alg, der(0x04, &rsa)].concat())
}

/// A SEC1 P-256 private key.
pub fn sec1_ec(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut point = vec![0x00, 0x04];
    point.extend(rng.bytes(64));
    der(
        0x30,
        &[
            der(0x02, &[1]),
            der(0x04, &rng.bytes(32)),
            der(
                0xa0,
                &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
            ),
            der(0xa1, &der(0x03, &point)),
        ]
        .concat(),
    )
}

pub fn pem(label: &str, der_bytes: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der_bytes);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn uleb(mut v: u32, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Modified UTF-8 as DEX stores it: NUL as C0 80, supplementary characters as two 3-byte
/// surrogates.
pub fn mutf8(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for unit in s.encode_utf16() {
        match unit {
            0 => out.extend([0xc0, 0x80]),
            1..=0x7f => out.push(unit as u8),
            0x80..=0x7ff => out.extend([0xc0 | (unit >> 6) as u8, 0x80 | (unit & 0x3f) as u8]),
            _ => out.extend([
                0xe0 | (unit >> 12) as u8,
                0x80 | ((unit >> 6) & 0x3f) as u8,
                0x80 | (unit & 0x3f) as u8,
            ]),
        }
    }
    out
}

/// A DEX file whose string table holds `strings` (sorted, as d8 writes them). Returns the bytes
/// and, for each input string, the file offset of its first character.
pub fn dex(strings: &[&str]) -> (Vec<u8>, Vec<usize>) {
    let mut sorted: Vec<&str> = strings.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let header = 0x70;
    let ids_off = header;
    let data_off = ids_off + sorted.len() * 4;
    let mut data = Vec::new();
    let mut ids = Vec::new();
    let mut char_offsets = std::collections::HashMap::new();
    for s in &sorted {
        ids.extend(((data_off + data.len()) as u32).to_le_bytes());
        uleb(s.encode_utf16().count() as u32, &mut data);
        char_offsets.insert(*s, data_off + data.len());
        data.extend(mutf8(s));
        data.push(0);
    }
    let mut file = vec![0u8; header];
    file[..8].copy_from_slice(b"dex\n035\0");
    let size = (header + ids.len() + data.len()) as u32;
    file[0x20..0x24].copy_from_slice(&size.to_le_bytes());
    file[0x24..0x28].copy_from_slice(&(header as u32).to_le_bytes());
    file[0x28..0x2c].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    file[0x38..0x3c].copy_from_slice(&(sorted.len() as u32).to_le_bytes());
    file[0x3c..0x40].copy_from_slice(&(ids_off as u32).to_le_bytes());
    file.extend(ids);
    file.extend(data);
    // Adler-32 over everything after the checksum field, as the format defines.
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &file[12..] {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    let checksum = (b << 16) | a;
    file[8..12].copy_from_slice(&checksum.to_le_bytes());
    let offsets = strings.iter().map(|s| char_offsets[s]).collect();
    (file, offsets)
}

/// A 64-bit Mach-O image with `__TEXT,__text`, `__TEXT,__cstring` (holding `strings`) and
/// `__TEXT,__objc_methname` (holding `methnames`). Returns the bytes and the offset of each
/// C string.
pub fn macho(strings: &[&str], methnames: &[&str]) -> (Vec<u8>, Vec<usize>) {
    let sections = 3usize;
    let cmd_size = 72 + 80 * sections;
    let header = 32;
    let text_off = header + cmd_size;
    let code = [0x1f, 0x20, 0x03, 0xd5].repeat(8); // arm64 NOPs
    let cstring_off = text_off + code.len();
    let mut cstrings = Vec::new();
    let mut offsets = Vec::new();
    for s in strings {
        offsets.push(cstring_off + cstrings.len());
        cstrings.extend(s.as_bytes());
        cstrings.push(0);
    }
    let meth_off = cstring_off + cstrings.len();
    let mut meth = Vec::new();
    for s in methnames {
        meth.extend(s.as_bytes());
        meth.push(0);
    }
    let end = meth_off + meth.len();
    let mut f = Vec::new();
    f.extend(0xfeed_facfu32.to_le_bytes());
    f.extend(0x0100_000cu32.to_le_bytes()); // CPU_TYPE_ARM64
    f.extend(0u32.to_le_bytes());
    f.extend(2u32.to_le_bytes()); // MH_EXECUTE
    f.extend(1u32.to_le_bytes()); // ncmds
    f.extend((cmd_size as u32).to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(0u32.to_le_bytes());
    // LC_SEGMENT_64 __TEXT
    f.extend(0x19u32.to_le_bytes());
    f.extend((cmd_size as u32).to_le_bytes());
    f.extend(name16("__TEXT"));
    f.extend(0x1_0000_0000u64.to_le_bytes());
    f.extend((end as u64).to_le_bytes());
    f.extend(0u64.to_le_bytes());
    f.extend((end as u64).to_le_bytes());
    f.extend(5u32.to_le_bytes());
    f.extend(5u32.to_le_bytes());
    f.extend((sections as u32).to_le_bytes());
    f.extend(0u32.to_le_bytes());
    for (name, off, size, flags) in [
        ("__text", text_off, code.len(), 0x8000_0400u32),
        ("__cstring", cstring_off, cstrings.len(), 0x2),
        ("__objc_methname", meth_off, meth.len(), 0x2),
    ] {
        f.extend(name16(name));
        f.extend(name16("__TEXT"));
        f.extend((0x1_0000_0000u64 + off as u64).to_le_bytes());
        f.extend((size as u64).to_le_bytes());
        f.extend((off as u32).to_le_bytes());
        f.extend(0u32.to_le_bytes()); // align
        f.extend(0u32.to_le_bytes()); // reloff
        f.extend(0u32.to_le_bytes()); // nreloc
        f.extend(flags.to_le_bytes());
        f.extend([0u8; 12]);
    }
    assert_eq!(f.len(), text_off);
    f.extend(code);
    f.extend(cstrings);
    f.extend(meth);
    (f, offsets)
}

/// Wraps a thin image in a fat (universal) header; the image starts at 0x1000.
pub fn fat(thin: &[u8]) -> (Vec<u8>, usize) {
    let base = 0x1000;
    let mut f = Vec::new();
    f.extend(0xcafe_babeu32.to_be_bytes());
    f.extend(1u32.to_be_bytes());
    f.extend(0x0100_000cu32.to_be_bytes());
    f.extend(0u32.to_be_bytes());
    f.extend((base as u32).to_be_bytes());
    f.extend((thin.len() as u32).to_be_bytes());
    f.extend(12u32.to_be_bytes());
    f.resize(base, 0);
    f.extend(thin);
    (f, base)
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..s.len()].copy_from_slice(s.as_bytes());
    n
}

/// A minimal ELF64 shared object with `.rodata` holding `rodata`. Returns the bytes and the
/// file offset of `.rodata`.
pub fn elf(rodata: &[u8]) -> (Vec<u8>, usize) {
    let shstrtab = b"\0.rodata\0.shstrtab\0";
    let rodata_off = 64;
    let shstr_off = rodata_off + rodata.len();
    let sh_off = (shstr_off + shstrtab.len() + 7) & !7;
    let mut f = Vec::new();
    f.extend(b"\x7fELF\x02\x01\x01\0");
    f.extend([0u8; 8]);
    f.extend(3u16.to_le_bytes()); // ET_DYN
    f.extend(0xb7u16.to_le_bytes()); // EM_AARCH64
    f.extend(1u32.to_le_bytes());
    f.extend(0u64.to_le_bytes()); // entry
    f.extend(0u64.to_le_bytes()); // phoff
    f.extend((sh_off as u64).to_le_bytes());
    f.extend(0u32.to_le_bytes()); // flags
    f.extend(64u16.to_le_bytes()); // ehsize
    f.extend(56u16.to_le_bytes());
    f.extend(0u16.to_le_bytes());
    f.extend(64u16.to_le_bytes()); // shentsize
    f.extend(3u16.to_le_bytes()); // shnum
    f.extend(2u16.to_le_bytes()); // shstrndx
    f.extend(rodata);
    f.extend(shstrtab);
    f.resize(sh_off, 0);
    let sh = |name: u32, kind: u32, off: usize, size: usize| {
        let mut h = Vec::new();
        h.extend(name.to_le_bytes());
        h.extend(kind.to_le_bytes());
        h.extend(0u64.to_le_bytes());
        h.extend(0u64.to_le_bytes());
        h.extend((off as u64).to_le_bytes());
        h.extend((size as u64).to_le_bytes());
        h.extend([0u8; 24]);
        h
    };
    f.extend([0u8; 64]);
    f.extend(sh(1, 1, rodata_off, rodata.len()));
    f.extend(sh(9, 3, shstr_off, shstrtab.len()));
    (f, rodata_off)
}

/// An attribute value in binary XML.
#[derive(Clone)]
pub enum AVal {
    Bool(bool),
    Int(u32),
    Str(String),
    Ref(u32),
}

pub const ANDROID_NS: &str = "http://schemas.android.com/apk/res/android";

enum Ev {
    Start(String, Vec<(bool, String, u32, AVal)>),
    End(String),
}

/// Builds Android binary XML (UTF-16 string pool, resource map, namespace, elements).
#[derive(Default)]
pub struct Axml {
    events: Vec<Ev>,
}

impl Axml {
    /// `attrs`: (in android namespace, name, resource id or 0, value).
    pub fn start(mut self, name: &str, attrs: &[(bool, &str, u32, AVal)]) -> Self {
        self.events.push(Ev::Start(
            name.to_owned(),
            attrs
                .iter()
                .map(|(ns, n, id, v)| (*ns, (*n).to_owned(), *id, v.clone()))
                .collect(),
        ));
        self
    }
    pub fn end(mut self, name: &str) -> Self {
        self.events.push(Ev::End(name.to_owned()));
        self
    }

    /// The document, and the file offset of the first character of each pool string.
    pub fn build(self) -> (Vec<u8>, std::collections::HashMap<String, usize>) {
        // Attribute names with resource ids come first, so that their pool index is their
        // index in the resource map.
        let mut strings: Vec<String> = Vec::new();
        let mut ids: Vec<u32> = Vec::new();
        let index = |s: &str, strings: &mut Vec<String>| -> u32 {
            if let Some(i) = strings.iter().position(|x| x == s) {
                return i as u32;
            }
            strings.push(s.to_owned());
            (strings.len() - 1) as u32
        };
        for ev in &self.events {
            if let Ev::Start(_, attrs) = ev {
                for (_, n, id, _) in attrs {
                    if *id != 0 && !strings.contains(n) {
                        strings.push(n.clone());
                        ids.push(*id);
                    }
                }
            }
        }
        let ns_prefix = index("android", &mut strings);
        let ns_uri = index(ANDROID_NS, &mut strings);
        let mut body = Vec::new();
        let chunk = |kind: u16, header: u16, payload: &[u8]| {
            let mut c = Vec::new();
            c.extend(kind.to_le_bytes());
            c.extend(header.to_le_bytes());
            c.extend(((8 + payload.len()) as u32).to_le_bytes());
            c.extend(payload);
            c
        };
        let node = |extra: &[u8]| {
            let mut p = Vec::new();
            p.extend(1u32.to_le_bytes()); // line
            p.extend(0xffff_ffffu32.to_le_bytes()); // comment
            p.extend(extra);
            p
        };
        let ns_ext = [ns_prefix.to_le_bytes(), ns_uri.to_le_bytes()].concat();
        body.extend(chunk(0x0100, 16, &node(&ns_ext)));
        for ev in &self.events {
            match ev {
                Ev::Start(name, attrs) => {
                    let name_i = index(name, &mut strings);
                    let mut ext = Vec::new();
                    ext.extend(0xffff_ffffu32.to_le_bytes());
                    ext.extend(name_i.to_le_bytes());
                    ext.extend(20u16.to_le_bytes());
                    ext.extend(20u16.to_le_bytes());
                    ext.extend((attrs.len() as u16).to_le_bytes());
                    ext.extend([0u8; 6]);
                    for (ns, n, _, v) in attrs {
                        let ni = index(n, &mut strings);
                        let (raw, ty, data) = match v {
                            AVal::Bool(b) => {
                                (0xffff_ffff, 0x12u8, if *b { 0xffff_ffff } else { 0 })
                            }
                            AVal::Int(i) => (0xffff_ffff, 0x10, *i),
                            AVal::Ref(r) => (0xffff_ffff, 0x01, *r),
                            AVal::Str(s) => {
                                let si = index(s, &mut strings);
                                (si, 0x03, si)
                            }
                        };
                        ext.extend((if *ns { ns_uri } else { 0xffff_ffff }).to_le_bytes());
                        ext.extend(ni.to_le_bytes());
                        ext.extend(raw.to_le_bytes());
                        ext.extend(8u16.to_le_bytes());
                        ext.push(0);
                        ext.push(ty);
                        ext.extend(data.to_le_bytes());
                    }
                    body.extend(chunk(0x0102, 16, &node(&ext)));
                }
                Ev::End(name) => {
                    let name_i = index(name, &mut strings);
                    let ext = [0xffff_ffffu32.to_le_bytes(), name_i.to_le_bytes()].concat();
                    body.extend(chunk(0x0103, 16, &node(&ext)));
                }
            }
        }
        body.extend(chunk(0x0101, 16, &node(&ns_ext)));
        let (pool, rel_offsets) = string_pool(&strings, false);
        let mut map = Vec::new();
        for id in &ids {
            map.extend(id.to_le_bytes());
        }
        let map_chunk = chunk(0x0180, 8, &map);
        let total = 8 + pool.len() + map_chunk.len() + body.len();
        let mut doc = Vec::new();
        doc.extend(0x0003u16.to_le_bytes());
        doc.extend(8u16.to_le_bytes());
        doc.extend((total as u32).to_le_bytes());
        doc.extend(&pool);
        doc.extend(map_chunk);
        doc.extend(body);
        let offsets = strings
            .iter()
            .zip(rel_offsets)
            .map(|(s, o)| (s.clone(), 8 + o))
            .collect();
        (doc, offsets)
    }
}

/// A string pool chunk; returns it and each string's first-character offset in the chunk.
pub fn string_pool(strings: &[String], utf8: bool) -> (Vec<u8>, Vec<usize>) {
    let header = 28;
    let strings_start = header + 4 * strings.len();
    let mut data = Vec::new();
    let mut rel = Vec::new();
    let mut char_at = Vec::new();
    for s in strings {
        rel.push(data.len() as u32);
        if utf8 {
            let units = s.encode_utf16().count();
            let bytes = s.as_bytes();
            for len in [units, bytes.len()] {
                if len > 0x7f {
                    data.extend([0x80 | (len >> 8) as u8, len as u8]);
                } else {
                    data.push(len as u8);
                }
            }
            char_at.push(strings_start + data.len());
            data.extend(bytes);
            data.push(0);
        } else {
            let units: Vec<u16> = s.encode_utf16().collect();
            data.extend((units.len() as u16).to_le_bytes());
            char_at.push(strings_start + data.len());
            for u in units {
                data.extend(u.to_le_bytes());
            }
            data.extend([0, 0]);
        }
    }
    while data.len() % 4 != 0 {
        data.push(0);
    }
    let size = strings_start + data.len();
    let mut c = Vec::new();
    c.extend(0x0001u16.to_le_bytes());
    c.extend((header as u16).to_le_bytes());
    c.extend((size as u32).to_le_bytes());
    c.extend((strings.len() as u32).to_le_bytes());
    c.extend(0u32.to_le_bytes());
    c.extend((if utf8 { 0x100u32 } else { 0 }).to_le_bytes());
    c.extend((strings_start as u32).to_le_bytes());
    c.extend(0u32.to_le_bytes());
    for r in rel {
        c.extend(r.to_le_bytes());
    }
    c.extend(data);
    (c, char_at)
}

/// A `resources.arsc` with a UTF-8 global value pool (no packages). Returns the bytes and each
/// string's offset.
pub fn arsc(strings: &[&str]) -> (Vec<u8>, Vec<usize>) {
    let owned: Vec<String> = strings.iter().map(|s| (*s).to_owned()).collect();
    let (pool, offsets) = string_pool(&owned, true);
    let mut f = Vec::new();
    f.extend(0x0002u16.to_le_bytes());
    f.extend(12u16.to_le_bytes());
    f.extend(((12 + pool.len()) as u32).to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(pool);
    (f, offsets.into_iter().map(|o| o + 12).collect())
}

/// A plist value for the binary writer.
pub enum P {
    Bool(bool),
    Str(String),
    Dict(Vec<(String, P)>),
}

/// Writes a binary plist (`bplist00`). Returns the bytes and the offset of each string value's
/// first character, keyed by the string.
pub fn bplist(root: &P) -> (Vec<u8>, std::collections::HashMap<String, usize>) {
    // Flatten depth-first: each object gets an index; containers refer to children by index.
    fn flatten(p: &P, objs: &mut Vec<Vec<u8>>, strings: &mut Vec<(usize, String)>) -> usize {
        let idx = objs.len();
        objs.push(Vec::new());
        let enc = match p {
            P::Bool(b) => vec![if *b { 0x09 } else { 0x08 }],
            P::Str(s) => {
                strings.push((idx, s.clone()));
                let mut v = len_marker(0x50, s.len());
                v.extend(s.as_bytes());
                v
            }
            P::Dict(entries) => {
                let mut keys = Vec::new();
                let mut vals = Vec::new();
                for (k, v) in entries {
                    keys.push(flatten(&P::Str(k.clone()), objs, &mut Vec::new()));
                    vals.push(flatten(v, objs, strings));
                }
                let mut v = len_marker(0xd0, entries.len());
                v.extend(keys.iter().map(|&k| k as u8));
                v.extend(vals.iter().map(|&k| k as u8));
                v
            }
        };
        objs[idx] = enc;
        idx
    }
    fn len_marker(base: u8, n: usize) -> Vec<u8> {
        if n < 15 {
            vec![base | n as u8]
        } else {
            vec![base | 0x0f, 0x10, n as u8]
        }
    }
    let mut objs = Vec::new();
    let mut strings = Vec::new();
    flatten(root, &mut objs, &mut strings);
    assert!(objs.len() < 256);
    let mut f = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for o in &objs {
        offsets.push(f.len());
        f.extend(o);
    }
    let table = f.len();
    for o in &offsets {
        f.extend((*o as u16).to_be_bytes());
    }
    f.extend([0u8; 6]);
    f.push(2); // offset size
    f.push(1); // ref size
    f.extend((objs.len() as u64).to_be_bytes());
    f.extend(0u64.to_be_bytes());
    f.extend((table as u64).to_be_bytes());
    let map = strings
        .into_iter()
        .map(|(i, s)| {
            let header = if s.len() < 15 { 1 } else { 3 };
            (s, offsets[i] + header)
        })
        .collect();
    (f, map)
}

/// A zip written with the zip crate (deflate unless the name ends in `.arsc` or `.png`, which
/// packagers store).
pub fn zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        let method = if name.ends_with(".arsc") || name.ends_with(".png") {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        w.start_file(*name, options).expect("start");
        w.write_all(data).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

/// One entry for the hand-written zip: name, method (0 stored, 8 deflate), data as stored,
/// declared uncompressed size, CRC.
pub struct RawEntry {
    pub name: String,
    pub method: u16,
    pub data: Vec<u8>,
    pub size: u32,
    pub crc: u32,
}

/// A zip written by hand, so that sizes, names and offsets can lie. `cd_copies` repeats each
/// central directory record pointing at the same local header (overlapping entries).
pub fn raw_zip(entries: &[RawEntry], cd_copies: usize) -> Vec<u8> {
    let mut f = Vec::new();
    let mut cd = Vec::new();
    let mut count = 0u16;
    for e in entries {
        let local = f.len() as u32;
        f.extend(0x0403_4b50u32.to_le_bytes());
        f.extend(20u16.to_le_bytes());
        f.extend(0u16.to_le_bytes());
        f.extend(e.method.to_le_bytes());
        f.extend([0u8; 4]);
        f.extend(e.crc.to_le_bytes());
        f.extend((e.data.len() as u32).to_le_bytes());
        f.extend(e.size.to_le_bytes());
        f.extend((e.name.len() as u16).to_le_bytes());
        f.extend(0u16.to_le_bytes());
        f.extend(e.name.as_bytes());
        f.extend(&e.data);
        for copy in 0..cd_copies.max(1) {
            let name = if copy == 0 {
                e.name.clone()
            } else {
                format!("{}.{copy}", e.name)
            };
            cd.extend(0x0201_4b50u32.to_le_bytes());
            cd.extend(20u16.to_le_bytes());
            cd.extend(20u16.to_le_bytes());
            cd.extend(0u16.to_le_bytes());
            cd.extend(e.method.to_le_bytes());
            cd.extend([0u8; 4]);
            cd.extend(e.crc.to_le_bytes());
            cd.extend((e.data.len() as u32).to_le_bytes());
            cd.extend(e.size.to_le_bytes());
            cd.extend((name.len() as u16).to_le_bytes());
            cd.extend([0u8; 8]);
            cd.extend(0u32.to_le_bytes());
            cd.extend(local.to_le_bytes());
            cd.extend(name.as_bytes());
            count += 1;
        }
    }
    let cd_off = f.len() as u32;
    f.extend(&cd);
    f.extend(0x0605_4b50u32.to_le_bytes());
    f.extend([0u8; 4]);
    f.extend(count.to_le_bytes());
    f.extend(count.to_le_bytes());
    f.extend((cd.len() as u32).to_le_bytes());
    f.extend(cd_off.to_le_bytes());
    f.extend(0u16.to_le_bytes());
    f
}

/// A raw deflate stream of `mib` MiB of zeros, about 1 KiB per MiB, made without compressing
/// the whole: one full-flushed megabyte repeated (a full flush resets the window, so copies
/// decode independently), then an empty final block.
pub fn deflated_zeros(mib: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let zeros = vec![0u8; 1 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let mut chunk = Vec::with_capacity(1 << 16);
    c.compress_vec(&zeros, &mut chunk, FlushCompress::Full)
        .expect("deflate");
    assert_eq!(
        c.total_in(),
        1 << 20,
        "one call consumes the whole megabyte"
    );
    let mut out = Vec::with_capacity(chunk.len() * mib + 2);
    for _ in 0..mib {
        out.extend_from_slice(&chunk);
    }
    out.extend([0x03, 0x00]);
    out
}

/// Where `needle` sits in `hay`.
pub fn find(hay: &[u8], needle: &str) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap_or_else(|| panic!("{needle} not in file"))
}
