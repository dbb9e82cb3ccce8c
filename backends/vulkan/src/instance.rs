//! The backend: loading the Vulkan loader, creating the instance, and listing physical devices.

use std::sync::Arc;

use anyaccel_hal::{Backend, Device, Unavailable};
use ash::vk;

use crate::device::{PhysicalDeviceReport, VulkanDevice};

/// The Vulkan backend, named `vulkan`.
///
/// [`Backend::probe`] opens the system's Vulkan loader (`libvulkan.so.1`) at run time, creates a
/// Vulkan 1.2+ instance and lists every physical device that has a compute queue family as
/// `vulkan:0`, `vulkan:1`, ... A missing loader, a failed instance creation or no usable device
/// is [`Unavailable`] with the loader's words; probing never panics.
#[derive(Debug, Clone, Copy, Default)]
pub struct VulkanBackend;

impl Backend for VulkanBackend {
    fn name(&self) -> &str {
        "vulkan"
    }

    fn probe(&self) -> Result<Vec<Arc<dyn Device>>, Unavailable> {
        let instance = InstanceShared::new()?;
        instance.devices()
    }
}

/// The lowest Vulkan version the backend uses: timeline semaphores, 16-bit storage and
/// `shaderFloat16` are core from 1.2 on.
pub(crate) const MIN_API: u32 = vk::API_VERSION_1_2;

/// The loader and the instance, shared by every device made from them and destroyed last.
pub(crate) struct InstanceShared {
    // Kept alive for as long as the instance: the function pointers come from this library.
    _entry: ash::Entry,
    pub(crate) raw: ash::Instance,
    /// The instance's API version.
    pub(crate) api_version: u32,
}

pub(crate) fn version_string(v: u32) -> String {
    format!(
        "{}.{}.{}",
        vk::api_version_major(v),
        vk::api_version_minor(v),
        vk::api_version_patch(v)
    )
}

impl InstanceShared {
    fn new() -> Result<Arc<InstanceShared>, Unavailable> {
        // SAFETY: loading the system's Vulkan loader runs its initialisers; the loader is a
        // well-behaved shared library, and the Entry keeps it loaded while we use it.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| {
            Unavailable::new(format!(
                "cannot load the Vulkan loader (libvulkan.so.1): {e}; install the loader \
                 (e.g. the libvulkan1 package) and a driver (e.g. mesa-vulkan-drivers)"
            ))
        })?;
        // SAFETY: `entry` holds valid global function pointers.
        let loader_version = unsafe { entry.try_enumerate_instance_version() }
            .map_err(|e| {
                Unavailable::new(format!("vkEnumerateInstanceVersion failed: {e:?} ({e})"))
            })?
            .unwrap_or(vk::API_VERSION_1_0);
        if loader_version < MIN_API {
            return Err(Unavailable::new(format!(
                "the Vulkan loader supports Vulkan {}, but anyaccel needs Vulkan {} \
                 (timeline semaphores, 16-bit storage)",
                version_string(loader_version),
                version_string(MIN_API)
            )));
        }
        let api_version = loader_version.min(vk::API_VERSION_1_3);
        let app = vk::ApplicationInfo::default()
            .application_name(c"anyaccel")
            .engine_name(c"anyaccel")
            .engine_version(vk::make_api_version(0, 0, 1, 0))
            .api_version(api_version);
        let info = vk::InstanceCreateInfo::default().application_info(&app);
        // SAFETY: `info` and what it points to live across the call; no layers or extensions
        // are requested, so nothing else must exist.
        let raw = unsafe { entry.create_instance(&info, None) }.map_err(|e| {
            let hint = if e == vk::Result::ERROR_INCOMPATIBLE_DRIVER {
                ": the loader found no Vulkan driver (ICD) supporting the requested version; \
                 check that a driver is installed (e.g. mesa-vulkan-drivers) and that \
                 VK_ICD_FILENAMES / VK_DRIVER_FILES, if set, name its JSON manifest"
            } else {
                ""
            };
            Unavailable::new(format!("vkCreateInstance failed: {e:?} ({e}){hint}"))
        })?;
        Ok(Arc::new(InstanceShared {
            _entry: entry,
            raw,
            api_version,
        }))
    }

    /// Every physical device with a compute queue family, as an anyaccel device.
    fn devices(self: &Arc<Self>) -> Result<Vec<Arc<dyn Device>>, Unavailable> {
        // SAFETY: the instance is valid for the life of `self`.
        let physical = unsafe { self.raw.enumerate_physical_devices() }.map_err(|e| {
            Unavailable::new(format!("vkEnumeratePhysicalDevices failed: {e:?} ({e})"))
        })?;
        if physical.is_empty() {
            return Err(Unavailable::new(
                "the Vulkan loader found no physical device: no Vulkan driver (ICD) is \
                 installed, or VK_ICD_FILENAMES / VK_DRIVER_FILES names none that loads",
            ));
        }
        let mut devices: Vec<Arc<dyn Device>> = Vec::new();
        let mut skipped = Vec::new();
        for pd in physical {
            match PhysicalDeviceReport::read(self, pd) {
                Ok(report) => {
                    let id = format!("vulkan:{}", devices.len());
                    let device = VulkanDevice::new(self.clone(), report, id)
                        .map_err(|e| Unavailable::new(e.message().to_string()))?;
                    devices.push(device);
                }
                Err(why) => skipped.push(why),
            }
        }
        if devices.is_empty() {
            return Err(Unavailable::new(format!(
                "no usable Vulkan device: {}",
                skipped.join("; ")
            )));
        }
        Ok(devices)
    }
}

impl Drop for InstanceShared {
    fn drop(&mut self) {
        // SAFETY: every object made from the instance holds an Arc to it, so none is left.
        unsafe { self.raw.destroy_instance(None) };
    }
}

/// The text of a NUL-terminated, fixed-size Vulkan string array, lossily.
pub(crate) fn fixed_str(chars: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
