//! Weighted rendezvous scores: a fixed, portable hash and a portable logarithm.
//!
//! The score of node `n` for segment `s` is `-ln(u(s, n)) / quota(n)`, where `u` is a hash of the
//! pair mapped to the open interval (0, 1). The node with the *lowest* score is the segment's
//! first choice. Since `-ln(u)` is exponentially distributed, the minimum of `-ln(u_n) / w_n` over
//! nodes falls on node `n` with probability `w_n / Σw`: weighted rendezvous hashing (Schindelhauer
//! and Schomaker's "logarithmic method").
//!
//! Everything here must give bit-identical results on every machine and every release, because a
//! new leader recomputing a different ranking would move data for nothing. So: no `RandomState`,
//! a hash written out here (FNV-1a, finished with MurmurHash3's `fmix64`), and a logarithm built
//! from IEEE-754 basic operations only (which are exactly rounded everywhere), not the platform's
//! `libm`. Changing any constant in this file reshuffles every cluster's placement.

/// FNV-1a 64-bit offset basis and prime.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Separates node keys from segment hashes, so a node and a segment with the same name do not
/// produce a structured pair hash.
const NODE_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// MurmurHash3's 64-bit finalizer: a bijection with full avalanche.
pub(super) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Stable 64-bit hash of a name (a segment id).
pub(super) fn name_hash(name: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in name.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    fmix64(h)
}

/// Stable key of a node, combined with a segment's [`name_hash`] by [`unit`].
pub(super) fn node_key(name: &str) -> u64 {
    fmix64(name_hash(name) ^ NODE_SEED)
}

/// The pair's uniform variate in (0, 1): 53 random bits, centred so it is never 0 nor 1.
pub(super) fn unit(segment_hash: u64, node_key: u64) -> f64 {
    let x = fmix64(segment_hash ^ node_key);
    ((x >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// `-ln(u)` for `u` in (0, 1], from basic IEEE operations only (portable bit-for-bit).
///
/// `u = m · 2^e` with `m` in [√½, √2); `ln m = 2·atanh(t)` with `t = (m−1)/(m+1)`, `|t| ≤ 0.172`,
/// summed to `t^23` (error below 1e-17 relative). Accurate to a few ulps, which is all a ranking
/// needs; what matters is that it is the same everywhere.
pub(super) fn neg_ln(u: f64) -> f64 {
    const LN_2: f64 = std::f64::consts::LN_2;
    const SQRT_2: f64 = std::f64::consts::SQRT_2;
    debug_assert!(u > 0.0 && u <= 1.0 && u.is_normal(), "{u}");
    let bits = u.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > SQRT_2 {
        m *= 0.5;
        exponent += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    // 1 + t²/3 + t⁴/5 + … + t²²/23, Horner form.
    let mut series = 1.0 / 23.0;
    for k in (0..11).rev() {
        series = series * t2 + 1.0 / (2 * k + 1) as f64;
    }
    -(exponent as f64 * LN_2 + 2.0 * t * series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neg_ln_matches_std() {
        let mut u = 1.0f64;
        while u > 1e-300 {
            for v in [u, u * 0.7, u * 0.9999, u * 0.5000001] {
                let want = -v.ln();
                let got = neg_ln(v);
                let tolerance = 4.0 * f64::EPSILON * want.abs().max(1e-300) + 1e-300;
                assert!((got - want).abs() <= tolerance, "{v}: {got} vs {want}");
            }
            u *= 0.83;
        }
        assert_eq!(neg_ln(1.0), 0.0);
    }

    /// Pins the hash: a change here would reshuffle every deployed cluster on upgrade.
    #[test]
    fn hashes_are_pinned() {
        // FNV-1a's published test vectors, then fmix64.
        assert_eq!(name_hash(""), fmix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(name_hash("a"), fmix64(0xaf63_dc4c_8601_ec8c));
        assert_eq!(name_hash("foobar"), fmix64(0x8594_4171_f739_67e8));
        assert_eq!(name_hash("seg-1"), 0x8389_8250_f72f_3ffd);
        assert_eq!(node_key("node-a"), 0x6286_e673_d9cb_6924);
        let u = unit(name_hash("seg-1"), node_key("node-a"));
        assert!(u > 0.0 && u < 1.0);
        assert_eq!(u.to_bits(), 0x3fe1_5f0a_9727_d59c);
    }

    #[test]
    fn unit_is_roughly_uniform() {
        let key = node_key("n");
        let mut buckets = [0u32; 10];
        for i in 0..100_000 {
            let u = unit(name_hash(&format!("s{i}")), key);
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((9_500..10_500).contains(&b), "{buckets:?}");
        }
    }
}
