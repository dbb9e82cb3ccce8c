//! The handle registry: every object handed to C lives in a slot here, and C holds only an id.
//!
//! An id packs a type tag (low 8 bits), the slot's generation, and the slot's index. A slot's
//! generation goes up each time its object is destroyed, so an id of a destroyed object no
//! longer matches (a stale handle), even after the slot is reused. A slot whose generation would
//! wrap is retired, never reused. Lookups clone the object's `Arc` and release the lock before
//! any work, so calls on different objects never wait on each other for long.

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};

use facade::{Error, Result};

/// The type of a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Runtime = 1,
    Device = 2,
    Buffer = 3,
    Queue = 4,
    Event = 5,
    Tensor = 6,
    Graph = 7,
    Replay = 8,
}

impl Kind {
    fn from_tag(tag: usize) -> Option<Kind> {
        [
            Kind::Runtime,
            Kind::Device,
            Kind::Buffer,
            Kind::Queue,
            Kind::Event,
            Kind::Tensor,
            Kind::Graph,
            Kind::Replay,
        ]
        .into_iter()
        .find(|k| *k as usize == tag)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Runtime => "runtime",
            Kind::Device => "device",
            Kind::Buffer => "buffer",
            Kind::Queue => "queue",
            Kind::Event => "event",
            Kind::Tensor => "tensor",
            Kind::Graph => "graph",
            Kind::Replay => "replay",
        }
    }
}

const KIND_BITS: u32 = 8;
const GEN_BITS: u32 = if usize::BITS >= 64 { 24 } else { 8 };
const INDEX_BITS: u32 = usize::BITS - KIND_BITS - GEN_BITS;
const GEN_MAX: u32 = (1 << GEN_BITS) - 1;
const INDEX_LIMIT: usize = 1 << INDEX_BITS;

type Object = Arc<dyn Any + Send + Sync>;

struct Slot {
    generation: u32,
    kind: Kind,
    object: Option<Object>,
}

#[derive(Default)]
struct Registry {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    slots: Vec::new(),
    free: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while the lock was held cannot leave a slot half-written (each update is one
    // assignment), so the registry stays usable.
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

fn encode(index: usize, generation: u32, kind: Kind) -> usize {
    (index << (KIND_BITS + GEN_BITS)) | ((generation as usize) << KIND_BITS) | kind as usize
}

fn decode(raw: usize) -> (usize, u32, usize) {
    let tag = raw & ((1 << KIND_BITS) - 1);
    let generation = ((raw >> KIND_BITS) as u32) & GEN_MAX;
    let index = raw >> (KIND_BITS + GEN_BITS);
    (index, generation, tag)
}

/// Registers `object` and returns its handle value (never 0).
pub(crate) fn insert<T: Any + Send + Sync>(kind: Kind, object: Arc<T>) -> Result<usize> {
    let mut reg = registry();
    let index = match reg.free.pop() {
        Some(i) => i,
        None => {
            if reg.slots.len() >= INDEX_LIMIT {
                return Err(Error::out_of_memory(format!(
                    "no free handle: {INDEX_LIMIT} handles are live or retired; destroy some objects"
                )));
            }
            reg.slots.push(Slot {
                generation: 1,
                kind,
                object: None,
            });
            reg.slots.len() - 1
        }
    };
    let slot = &mut reg.slots[index];
    slot.kind = kind;
    slot.object = Some(object);
    Ok(encode(index, slot.generation, kind))
}

fn lookup(reg: &Registry, raw: usize, kind: Kind, what: &str) -> Result<usize> {
    if raw == 0 {
        return Err(Error::invalid_argument(format!(
            "argument `{what}` is NULL: expected a {} handle",
            kind.name()
        )));
    }
    let (index, generation, tag) = decode(raw);
    let foreign = || {
        Error::invalid_argument(format!(
            "argument `{what}` ({raw:#x}) is not a handle that anyaccel made: expected a {} handle",
            kind.name()
        ))
    };
    let found = Kind::from_tag(tag).ok_or_else(foreign)?;
    let slot = reg.slots.get(index).ok_or_else(foreign)?;
    if found != kind {
        return Err(Error::invalid_argument(format!(
            "argument `{what}` is a {} handle, expected a {} handle",
            found.name(),
            kind.name()
        )));
    }
    if slot.generation != generation || slot.kind != kind || slot.object.is_none() {
        if generation == 0 || generation > slot.generation {
            return Err(foreign());
        }
        return Err(Error::invalid_argument(format!(
            "argument `{what}` is a stale {} handle: that {} was already destroyed",
            kind.name(),
            kind.name()
        )));
    }
    Ok(index)
}

fn downcast<T: Any + Send + Sync>(object: Object, kind: Kind) -> Result<Arc<T>> {
    object.downcast::<T>().map_err(|_| {
        Error::internal(format!(
            "the registry holds an object of another type under a {} handle",
            kind.name()
        ))
    })
}

/// The object behind a handle of type `kind`.
pub(crate) fn get<T: Any + Send + Sync>(raw: usize, kind: Kind, what: &str) -> Result<Arc<T>> {
    let object = {
        let reg = registry();
        let index = lookup(&reg, raw, kind, what)?;
        reg.slots[index].object.clone()
    };
    let object = object.ok_or_else(|| Error::internal("a checked slot is empty"))?;
    downcast(object, kind)
}

/// Removes the object behind a handle; the handle (and every copy of it) is stale from now on.
/// The object itself is dropped when the caller drops the returned `Arc` (after the lock).
pub(crate) fn remove<T: Any + Send + Sync>(raw: usize, kind: Kind, what: &str) -> Result<Arc<T>> {
    let object = {
        let mut reg = registry();
        let index = lookup(&reg, raw, kind, what)?;
        let slot = &mut reg.slots[index];
        let object = slot.object.take();
        if slot.generation < GEN_MAX {
            slot.generation += 1;
            reg.free.push(index);
        } else {
            // Retired: a reused id could equal an old one.
            slot.generation = GEN_MAX;
        }
        object
    };
    let object = object.ok_or_else(|| Error::internal("a checked slot is empty"))?;
    downcast(object, kind)
}

/// The C pointer type that carries a handle value. It is an id, not an address, and is never
/// dereferenced.
pub(crate) fn to_ptr<T>(raw: usize) -> *mut T {
    std::ptr::without_provenance_mut(raw)
}

/// The handle value a C pointer carries.
pub(crate) fn from_ptr<T>(ptr: *const T) -> usize {
    ptr.addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_detect_null_stale_foreign_and_mistyped_use() {
        let h = insert(Kind::Buffer, Arc::new(7u32)).unwrap();
        assert_ne!(h, 0);
        assert_eq!(*get::<u32>(h, Kind::Buffer, "b").unwrap(), 7);
        let e = get::<u32>(h, Kind::Tensor, "t").unwrap_err();
        assert!(
            e.message()
                .contains("is a buffer handle, expected a tensor"),
            "{e}"
        );
        assert!(get::<u32>(0, Kind::Buffer, "b")
            .unwrap_err()
            .message()
            .contains("NULL"));
        assert!(get::<u32>(0x7fff_1230, Kind::Buffer, "b")
            .unwrap_err()
            .message()
            .contains("not a handle that anyaccel made"));
        remove::<u32>(h, Kind::Buffer, "b").unwrap();
        let e = remove::<u32>(h, Kind::Buffer, "b").unwrap_err();
        assert!(e.message().contains("stale buffer handle"), "{e}");
        // The slot is reused with a new generation; the old id stays stale.
        let h2 = insert(Kind::Buffer, Arc::new(8u32)).unwrap();
        assert_ne!(h, h2);
        assert!(get::<u32>(h, Kind::Buffer, "b").is_err());
        assert_eq!(*get::<u32>(h2, Kind::Buffer, "b").unwrap(), 8);
        remove::<u32>(h2, Kind::Buffer, "b").unwrap();
    }
}
