//! Descriptor sets for launches, from per-batch descriptor pools, and the placeholder buffer
//! bound in place of empty views.

use std::sync::Arc;

use anyaccel_hal::{Error, Result};
use ash::vk;

use super::{QueueState, VulkanQueue};
use crate::memory::{Allocation, Purpose};

/// Descriptor sets per descriptor pool, and storage-buffer descriptors per pool.
const POOL_SETS: u32 = 64;
const POOL_BUFFERS: u32 = 1024;

impl VulkanQueue {
    /// The descriptor set for one launch, from the batch's descriptor pool.
    pub(super) fn descriptor_set(
        &self,
        st: &mut QueueState,
        layout: vk::DescriptorSetLayout,
    ) -> Result<vk::DescriptorSet> {
        let raw = &self.shared.raw;
        let layouts = [layout];
        let allocate = |pool: vk::DescriptorPool| {
            let info = vk::DescriptorSetAllocateInfo::default()
                .descriptor_pool(pool)
                .set_layouts(&layouts);
            // SAFETY: the pool is this queue's, used under the state lock; the layout is live.
            unsafe { raw.allocate_descriptor_sets(&info) }
        };
        if let Some(&pool) = st.batch.descriptor_pools.last() {
            match allocate(pool) {
                Ok(sets) if !sets.is_empty() => return Ok(sets[0]),
                Ok(_)
                | Err(vk::Result::ERROR_OUT_OF_POOL_MEMORY)
                | Err(vk::Result::ERROR_FRAGMENTED_POOL) => {}
                Err(e) => return Err(self.shared.vk_error("vkAllocateDescriptorSets", e)),
            }
        }
        let pool = match st.free_descriptor_pools.pop() {
            Some(pool) => pool,
            None => {
                let sizes = [vk::DescriptorPoolSize {
                    ty: vk::DescriptorType::STORAGE_BUFFER,
                    descriptor_count: POOL_BUFFERS,
                }];
                let info = vk::DescriptorPoolCreateInfo::default()
                    .max_sets(POOL_SETS)
                    .pool_sizes(&sizes);
                // SAFETY: a valid create info.
                unsafe { raw.create_descriptor_pool(&info, None) }
                    .map_err(|e| self.shared.vk_error("vkCreateDescriptorPool", e))?
            }
        };
        st.batch.descriptor_pools.push(pool);
        match allocate(pool) {
            Ok(sets) if !sets.is_empty() => Ok(sets[0]),
            Ok(_) => Err(Error::internal("vkAllocateDescriptorSets returned no set")),
            Err(e) => Err(self.shared.vk_error("vkAllocateDescriptorSets", e)),
        }
    }

    pub(super) fn placeholder(&self, st: &mut QueueState) -> Result<Arc<Allocation>> {
        if let Some(p) = &st.placeholder {
            return Ok(p.clone());
        }
        let p = Arc::new(Allocation::new(&self.shared, 16, Purpose::Device)?);
        st.placeholder = Some(p.clone());
        Ok(p)
    }
}
