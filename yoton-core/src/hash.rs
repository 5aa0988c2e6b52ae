//! Slot and port hashes, equal to the Python reference for every input.
//!
//! The reference computes `val = val + (val >> 3) + ord(c) * fac` with Python's
//! arbitrary-precision integers and reduces only at the very end, so the high bits
//! matter for every later right shift. A fixed-width wrapping integer gives different
//! numbers; this module keeps the exact value in a small little-endian bignum.

/// The multiplier of the reference hash loop.
const FAC: u64 = 0xD2D8_4A61;

/// First slot number that a hashed name can map to; 0..=7 are reserved.
pub const FIRST_HASHED_SLOT: u64 = 8;

/// Exact (unbounded) accumulator of the reference loop, as little-endian u64 limbs.
#[derive(Default)]
struct BigAcc {
    limbs: Vec<u64>,
}

impl BigAcc {
    /// `val = val + (val >> 3) + add`, for `add < 2**96`.
    fn step(&mut self, add: u128) {
        let n = self.limbs.len();
        // shifted = val >> 3, computed limb by limb from the original value.
        // Every partial sum stays below 2**97, so u128 never overflows.
        let mut carry: u128 = add;
        for i in 0..n {
            let lo = self.limbs.get(i).copied().unwrap_or(0);
            let hi = self.limbs.get(i + 1).copied().unwrap_or(0);
            let shifted = (lo >> 3) | (hi << 61);
            let sum = u128::from(lo) + u128::from(shifted) + carry;
            if let Some(limb) = self.limbs.get_mut(i) {
                *limb = sum as u64;
            }
            carry = sum >> 64;
        }
        while carry != 0 {
            self.limbs.push(carry as u64);
            carry >>= 64;
        }
    }

    /// The value modulo `m` (m > 0), by Horner's rule from the top limb.
    fn rem(&self, m: u64) -> u64 {
        let m = u128::from(m);
        let mut r: u128 = 0;
        for &limb in self.limbs.iter().rev() {
            r = ((r << 64) | u128::from(limb)) % m;
        }
        r as u64
    }

    fn low_bits(&self) -> u64 {
        self.limbs.first().copied().unwrap_or(0)
    }
}

fn reference_loop(name: &str) -> BigAcc {
    let mut acc = BigAcc::default();
    let mut count: u64 = 0;
    for c in name.chars() {
        acc.step(u128::from(u32::from(c)) * u128::from(FAC));
        count += 1;
    }
    acc.step(u128::from(count) * u128::from(FAC));
    acc
}

/// The slot number of a slot name, exactly as the Python reference computes it:
/// `8 + (val mod (2**64 - 8))`.
///
/// The name is hashed as given; channels normalise their slot strings (strip, lower-case)
/// before calling this (see [`channel_slot`]).
///
/// ```
/// let slot = yoton_core::slot_hash("chat.txt.pub-sub");
/// assert!(slot >= 8);
/// ```
pub fn slot_hash(name: &str) -> u64 {
    FIRST_HASHED_SLOT + reference_loop(name).rem(u64::MAX - 7)
}

/// The port number that the reference derives from a port name:
/// `49152 + (val mod 2**14)`.
///
/// ```
/// assert_eq!(yoton_core::port_hash("test"), 56337);
/// ```
pub fn port_hash(name: &str) -> u16 {
    // 49152 + (x mod 16384) is at most 65535.
    (49152 + (reference_loop(name).low_bits() & 0x3FFF)) as u16
}

/// The slot of a channel: the string `base.type.pattern`, stripped of surrounding
/// white space and lower-cased, then hashed with [`slot_hash`].
///
/// ```
/// assert_eq!(
///     yoton_core::channel_slot(" Chat", "TXT", "pub-sub"),
///     yoton_core::slot_hash("chat.txt.pub-sub"),
/// );
/// ```
pub fn channel_slot(base: &str, type_name: &str, pattern: &str) -> u64 {
    let name = format!("{base}.{type_name}.{pattern}");
    slot_hash(&name.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward u128 version, exact for short names (no overflow).
    fn short_reference(name: &str) -> u128 {
        let fac = u128::from(FAC);
        let mut val: u128 = 0;
        for c in name.chars() {
            val = val + (val >> 3) + u128::from(u32::from(c)) * fac;
        }
        val + (val >> 3) + name.chars().count() as u128 * fac
    }

    #[test]
    fn bignum_matches_u128_for_short_names() {
        for name in [
            "",
            "a",
            "test",
            "chat.txt.pub-sub",
            "héllo wörld",
            "0123456789abcdef",
        ] {
            let exact = short_reference(name);
            let m = u128::from(u64::MAX - 7);
            assert_eq!(slot_hash(name), 8 + (exact % m) as u64, "{name}");
            assert_eq!(
                u128::from(port_hash(name)),
                49152 + (exact % 16384),
                "{name}"
            );
        }
    }

    #[test]
    fn port_of_test_is_the_documented_one() {
        assert_eq!(port_hash("test"), 56337);
    }
}
