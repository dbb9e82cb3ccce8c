//! The [`Runtime`]: the registry of backends, lazy probing done once, and device selection.

use std::sync::{Arc, OnceLock, RwLock};

use crate::{Backend, Device, Error, Result, Unavailable};

struct Entry {
    backend: Arc<dyn Backend>,
    probed: OnceLock<Result<Vec<Arc<dyn Device>>, Unavailable>>,
}

impl Entry {
    fn devices(&self) -> &Result<Vec<Arc<dyn Device>>, Unavailable> {
        self.probed.get_or_init(|| {
            // A backend must not panic, but a vendor library might: keep the registry usable.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.backend.probe()))
                .unwrap_or_else(|_| Err(Unavailable::new("the backend panicked while probing")))
        })
    }
}

/// A backend and what probing it found.
#[derive(Clone)]
pub struct BackendStatus {
    /// The backend's name.
    pub name: String,
    /// Its devices, or why it is unavailable.
    pub devices: Result<Vec<Arc<dyn Device>>, Unavailable>,
}

/// The registry of backends.
///
/// Each backend is probed at most once, on first use, from any thread. Devices are selected by
/// [`Runtime::devices`], which honours `ANYACCEL_DEVICES` (a comma list of backend names or
/// device ids, e.g. `vulkan:0,cpu`).
#[derive(Default)]
pub struct Runtime {
    entries: RwLock<Vec<Arc<Entry>>>,
}

/// Environment variable that selects devices, e.g. `vulkan:0,cpu`.
pub const DEVICES_ENV: &str = "ANYACCEL_DEVICES";
/// Environment variable naming backends that must be available, e.g. `opencl,vulkan`.
pub const REQUIRE_ENV: &str = "ANYACCEL_REQUIRE";

impl Runtime {
    /// A runtime with these backends.
    pub fn with_backends(backends: Vec<Arc<dyn Backend>>) -> Result<Runtime> {
        let rt = Runtime::default();
        for b in backends {
            rt.add_backend(b)?;
        }
        Ok(rt)
    }

    /// Registers a backend (probed lazily). A second backend with a taken name is refused.
    pub fn add_backend(&self, backend: Arc<dyn Backend>) -> Result<()> {
        let mut entries = self.write();
        if entries.iter().any(|e| e.backend.name() == backend.name()) {
            return Err(Error::invalid_argument(format!(
                "add_backend: a backend named `{}` is already registered",
                backend.name()
            )));
        }
        entries.push(Arc::new(Entry {
            backend,
            probed: OnceLock::new(),
        }));
        Ok(())
    }

    fn entries(&self) -> Vec<Arc<Entry>> {
        self.entries
            .read()
            .map(|e| e.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Entry>>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Every registered backend with its devices or the reason it is unavailable. Probes.
    pub fn backends(&self) -> Vec<BackendStatus> {
        self.entries()
            .iter()
            .map(|e| BackendStatus {
                name: e.backend.name().to_string(),
                devices: e.devices().clone(),
            })
            .collect()
    }

    /// Every device of every available backend.
    pub fn all_devices(&self) -> Vec<Arc<dyn Device>> {
        self.entries()
            .iter()
            .filter_map(|e| e.devices().as_ref().ok().cloned())
            .flatten()
            .collect()
    }

    /// The devices selected by `ANYACCEL_DEVICES`, or every device when it is unset or empty.
    pub fn devices(&self) -> Result<Vec<Arc<dyn Device>>> {
        match std::env::var(DEVICES_ENV) {
            Ok(sel) if !sel.trim().is_empty() => self.select(&sel),
            _ => Ok(self.all_devices()),
        }
    }

    /// The devices a selector names: a comma list of backend names (`cpu`) or ids (`opencl:0`).
    /// A selector that names nothing is an error listing what exists.
    pub fn select(&self, selector: &str) -> Result<Vec<Arc<dyn Device>>> {
        let all = self.all_devices();
        let mut out: Vec<Arc<dyn Device>> = Vec::new();
        for item in selector.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let matched: Vec<_> = all
                .iter()
                .filter(|d| d.info().id == item || d.info().backend == item)
                .cloned()
                .collect();
            if matched.is_empty() {
                return Err(self.not_found(item));
            }
            for d in matched {
                if !out.iter().any(|o| o.info().id == d.info().id) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// The device with this id, e.g. `cpu:0`.
    pub fn device(&self, id: &str) -> Result<Arc<dyn Device>> {
        // Only the backend the id names is probed (`plugin:ref` for `plugin:ref:0`): a process
        // that wants one device does not start every other runtime.
        let owner = self
            .entries()
            .into_iter()
            .filter(|e| {
                id.strip_prefix(e.backend.name())
                    .is_some_and(|rest| rest.starts_with(':'))
            })
            .max_by_key(|e| e.backend.name().len());
        let found = owner.and_then(|e| {
            e.devices()
                .as_ref()
                .ok()
                .and_then(|ds| ds.iter().find(|d| d.info().id == id).cloned())
        });
        // A backend whose ids do not start with its name is found by looking at every device.
        found
            .or_else(|| self.all_devices().into_iter().find(|d| d.info().id == id))
            .ok_or_else(|| self.not_found(id))
    }

    fn not_found(&self, item: &str) -> Error {
        let ids: Vec<String> = self
            .all_devices()
            .iter()
            .map(|d| d.info().id.clone())
            .collect();
        // The backend an item names: `cpu` for `cpu:0`, `plugin:ref` for `plugin:ref:0`.
        let backends = self.backends();
        let named = backends.iter().find(|b| {
            item == b.name
                || item
                    .strip_prefix(b.name.as_str())
                    .is_some_and(|rest| rest.starts_with(':'))
        });
        let why = match named {
            Some(b) => match &b.devices {
                Err(u) => format!(" (backend {} is unavailable: {})", b.name, u.reason),
                Ok(d) => format!(" (backend {} has {} devices)", b.name, d.len()),
            },
            None => {
                let down: Vec<String> = backends
                    .iter()
                    .filter_map(|b| {
                        b.devices
                            .as_ref()
                            .err()
                            .map(|u| format!("{}: {}", b.name, u.reason))
                    })
                    .collect();
                if down.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (no backend of that name; unavailable backends: {})",
                        down.join("; ")
                    )
                }
            }
        };
        Error::invalid_argument(format!(
            "device `{item}` not found{why}; available devices: {}",
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        ))
    }

    /// Fails unless every backend named in `ANYACCEL_REQUIRE` is registered and available.
    pub fn check_required(&self) -> Result<()> {
        let Ok(list) = std::env::var(REQUIRE_ENV) else {
            return Ok(());
        };
        self.require(&list)
    }

    /// Fails unless every backend in the comma list is registered and available.
    pub fn require(&self, list: &str) -> Result<()> {
        let statuses = self.backends();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match statuses.iter().find(|b| b.name == name) {
                None => {
                    return Err(Error::unavailable(format!(
                        "required backend `{name}` is not compiled in; compiled-in backends: {}",
                        statuses
                            .iter()
                            .map(|b| b.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
                Some(BackendStatus {
                    devices: Err(u), ..
                }) => {
                    return Err(Error::unavailable(format!(
                        "required backend `{name}`: {}",
                        u.reason
                    )))
                }
                Some(BackendStatus { devices: Ok(d), .. }) if d.is_empty() => {
                    return Err(Error::unavailable(format!(
                        "required backend `{name}` has no devices"
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
