//! The last few of something, kept so that work repeating from call to call is done once.
//!
//! Calls repeat themselves: the same header blocks, the same literal path, the same series
//! attributes. Each place that remembers such work keeps only the last few results, looked up
//! by a linear scan (a handful of entries beats a hash map here) and replaced oldest first.

/// At most `N` entries; once full, each new one takes the place of the oldest.
pub struct Recent<T, const N: usize> {
    entries: Vec<T>,
    /// The entry the next new one replaces, once all are taken.
    oldest: usize,
}

impl<T, const N: usize> Default for Recent<T, N> {
    fn default() -> Self {
        Recent {
            entries: Vec::new(),
            oldest: 0,
        }
    }
}

impl<T, const N: usize> Recent<T, N> {
    pub const CAPACITY: usize = N;

    /// The index of the first entry that is `wanted`.
    pub fn position(&self, wanted: impl FnMut(&T) -> bool) -> Option<usize> {
        self.entries.iter().position(wanted)
    }

    /// The first entry that is `wanted`.
    pub fn find(&self, mut wanted: impl FnMut(&T) -> bool) -> Option<&T> {
        self.entries.iter().find(|entry| wanted(entry))
    }

    /// The entry at `index`, from [`Recent::position`].
    pub fn get(&self, index: usize) -> &T {
        &self.entries[index]
    }

    pub fn get_mut(&mut self, index: usize) -> &mut T {
        &mut self.entries[index]
    }

    /// Adds `entry`, in place of the oldest once full.
    pub fn insert(&mut self, entry: T) -> &mut T {
        if self.entries.len() < N {
            self.entries.push(entry);
            return self.entries.last_mut().expect("just pushed");
        }
        let oldest = self.take_oldest();
        *oldest = entry;
        oldest
    }

    /// The entry a new one should overwrite in place, reusing what it holds (buffers): the
    /// oldest once full, else a new one that `make` builds.
    pub fn reuse_oldest(&mut self, make: impl FnOnce() -> T) -> &mut T {
        if self.entries.len() < N {
            self.entries.push(make());
            return self.entries.last_mut().expect("just pushed");
        }
        self.take_oldest()
    }

    /// The oldest entry, which becomes the newest.
    fn take_oldest(&mut self) -> &mut T {
        let index = self.oldest;
        self.oldest = (index + 1) % N;
        &mut self.entries[index]
    }

    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_full_the_oldest_entry_goes_first() {
        let mut recent = Recent::<u32, 3>::default();
        for value in 1..=3 {
            recent.insert(value);
        }
        assert_eq!(recent.kept(), 3);
        recent.insert(4);
        assert_eq!(recent.find(|&value| value == 1), None);
        *recent.reuse_oldest(|| unreachable!("full")) = 5;
        assert_eq!(recent.find(|&value| value == 2), None);
        recent.insert(6);
        let kept: Vec<u32> = (0..3).map(|index| *recent.get(index)).collect();
        assert_eq!(kept, [4, 5, 6]);
        assert_eq!(recent.position(|&value| value == 5), Some(1));
    }

    #[test]
    fn while_there_is_room_entries_are_added() {
        let mut recent = Recent::<Vec<u8>, 2>::default();
        recent.reuse_oldest(Vec::new).extend_from_slice(b"a");
        recent.insert(b"b".to_vec());
        assert_eq!(recent.kept(), 2);
        assert_eq!(recent.get(0), b"a");
        assert_eq!(recent.get(1), b"b");
    }
}
