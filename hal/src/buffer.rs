//! Device memory: [`Buffer`] and bounds-checked [`BufferView`]s.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Weak};

use crate::{Error, Result};

/// What a backend implements for one allocation. Users hold it through [`Buffer`].
///
/// Dropping the last reference frees the memory; backends count live allocations so that tests
/// can prove nothing leaked ([`crate::Device::live_allocations`]).
pub trait DeviceMemory: Send + Sync + Any {
    /// Size in bytes.
    fn size(&self) -> usize;
    /// The id of the device that owns the memory, e.g. `cpu:0`.
    fn device_id(&self) -> &str;
    /// For the backend to recover its own type.
    fn as_any(&self) -> &dyn Any;
}

/// A reference-counted allocation on one device. Cloning it is cheap and shares the memory.
#[derive(Clone)]
pub struct Buffer {
    memory: Arc<dyn DeviceMemory>,
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("device", &self.device_id())
            .field("size", &self.size())
            .finish()
    }
}

impl Buffer {
    /// Wraps a backend's allocation.
    pub fn new(memory: Arc<dyn DeviceMemory>) -> Buffer {
        Buffer { memory }
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.memory.size()
    }

    /// The owning device's id.
    pub fn device_id(&self) -> &str {
        self.memory.device_id()
    }

    /// The backend's allocation, if it is of type `T`.
    pub fn downcast<T: DeviceMemory>(&self) -> Option<&T> {
        self.memory.as_any().downcast_ref::<T>()
    }

    /// True when both refer to the same allocation.
    pub fn same_memory(&self, other: &Buffer) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.memory), Arc::as_ptr(&other.memory))
    }

    /// The allocation's identity, held without keeping its memory: see [`BufferId`].
    pub fn id(&self) -> BufferId {
        BufferId(Arc::downgrade(&self.memory))
    }

    /// A view of `len` bytes starting at `offset`, or `OutOfBounds` if it does not fit.
    pub fn view(&self, offset: usize, len: usize) -> Result<BufferView> {
        let end = offset.checked_add(len);
        match end {
            Some(end) if end <= self.size() => {
                Ok(BufferView { buffer: self.clone(), offset, len })
            }
            _ => Err(Error::out_of_bounds(format!(
                "buffer view: bytes {offset}..{} of a {}-byte buffer on {}: a view must lie inside its buffer",
                offset as u128 + len as u128,
                self.size(),
                self.device_id()
            ))),
        }
    }

    /// A view of the whole buffer.
    pub fn whole(&self) -> BufferView {
        BufferView {
            buffer: self.clone(),
            offset: 0,
            len: self.size(),
        }
    }
}

/// The identity of an allocation that does not keep its memory alive: the memory is freed when
/// the last [`Buffer`] goes, but no later allocation is ever taken for the same one (the id holds
/// the allocation's handle, so its address is not reused while the id lives).
#[derive(Clone, Debug)]
pub struct BufferId(Weak<dyn DeviceMemory>);

impl PartialEq for BufferId {
    fn eq(&self, other: &BufferId) -> bool {
        std::ptr::addr_eq(self.0.as_ptr(), other.0.as_ptr())
    }
}

impl Eq for BufferId {}

impl std::hash::Hash for BufferId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.0.as_ptr() as *const () as usize).hash(state)
    }
}

impl BufferId {
    /// True when `buffer` is the allocation this id was taken from.
    pub fn is(&self, buffer: &Buffer) -> bool {
        std::ptr::addr_eq(self.0.as_ptr(), Arc::as_ptr(&buffer.memory))
    }

    /// True while some [`Buffer`] still holds the allocation.
    pub fn is_live(&self) -> bool {
        self.0.strong_count() > 0
    }
}

/// A byte range `(buffer, offset, len)` of a buffer, checked to lie inside it when made.
#[derive(Clone, Debug)]
pub struct BufferView {
    buffer: Buffer,
    offset: usize,
    len: usize,
}

impl BufferView {
    /// The buffer.
    pub fn buffer(&self) -> &Buffer {
        &self.buffer
    }

    /// First byte, relative to the buffer.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the view has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A view of `len` bytes starting at `offset` bytes into this view.
    pub fn sub(&self, offset: usize, len: usize) -> Result<BufferView> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(BufferView {
                buffer: self.buffer.clone(),
                offset: self.offset + offset,
                len,
            }),
            _ => Err(Error::out_of_bounds(format!(
                "buffer view: bytes {offset}..{} of a {}-byte view: a sub-view must lie inside its view",
                offset as u128 + len as u128,
                self.len
            ))),
        }
    }

    /// True when both views share at least one byte of the same allocation.
    pub fn overlaps(&self, other: &BufferView) -> bool {
        self.buffer.same_memory(&other.buffer)
            && self.len > 0
            && other.len > 0
            && self.offset < other.offset + other.len
            && other.offset < self.offset + self.len
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Host-less memory of a given size, for tests of views and layouts.
    pub(crate) struct Fake(pub(crate) usize);
    impl DeviceMemory for Fake {
        fn size(&self) -> usize {
            self.0
        }
        fn device_id(&self) -> &str {
            "fake:0"
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn views_are_bounds_checked() {
        let b = Buffer::new(Arc::new(Fake(10)));
        assert!(b.view(10, 0).is_ok());
        assert!(b.view(3, 7).is_ok());
        let e = b.view(3, 8).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::OutOfBounds);
        assert!(
            e.message().contains("bytes 3..11 of a 10-byte buffer"),
            "{e}"
        );
        assert!(b.view(usize::MAX, 2).is_err());
        let v = b.view(2, 6).unwrap();
        assert_eq!(v.sub(1, 5).unwrap().offset(), 3);
        assert!(v.sub(1, 6).is_err());
        let w = b.view(7, 3).unwrap();
        assert!(v.overlaps(&w));
        assert!(!v.overlaps(&b.view(8, 2).unwrap()));
        let other = Buffer::new(Arc::new(Fake(10)));
        assert!(!v.overlaps(&other.whole()));
    }
}
