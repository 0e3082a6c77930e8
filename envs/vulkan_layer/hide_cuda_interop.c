/*
 * A Vulkan layer that lets SAPIEN 2.2.2 create its device on Mesa's lavapipe (CPU rendering).
 *
 * SAPIEN 2 always enables VK_KHR_external_semaphore_fd and VK_KHR_external_fence_fd, which it needs only to share
 * images with CUDA; lavapipe has neither, so vkCreateDevice fails with VK_ERROR_EXTENSION_NOT_PRESENT. The manifest
 * advertises both as extensions of this layer (so the loader accepts the request), and this layer removes them from
 * the list it passes down. Every other call goes straight to the next layer or driver.
 *
 * Built by setup.sh: gcc -O2 -shared -fPIC -fvisibility=hidden -o libVkLayer_vlart_hide_cuda_interop.so this.c
 */
#include <stdlib.h>
#include <string.h>
#include <vulkan/vk_layer.h>
#include <vulkan/vulkan.h>

#define LAYER_EXPORT __attribute__((visibility("default")))

static const char *const hidden_extensions[] = {"VK_KHR_external_semaphore_fd", "VK_KHR_external_fence_fd"};

/* One process, one renderer: the next layer's entry points are kept in globals, set at instance/device creation. */
static PFN_vkGetInstanceProcAddr next_instance_proc_addr;
static PFN_vkGetDeviceProcAddr next_device_proc_addr;

static int is_hidden(const char *name) {
    for (size_t i = 0; i < sizeof hidden_extensions / sizeof hidden_extensions[0]; ++i)
        if (strcmp(name, hidden_extensions[i]) == 0) return 1;
    return 0;
}

/* Copies `names` without the hidden extensions into a new array (caller frees); *count is updated. */
static const char **without_hidden(const char *const *names, uint32_t *count) {
    const char **kept = malloc(sizeof(char *) * (*count ? *count : 1));
    uint32_t n = 0;
    for (uint32_t i = 0; kept && i < *count; ++i)
        if (!is_hidden(names[i])) kept[n++] = names[i];
    *count = n;
    return kept;
}

/* The loader's link to the next layer sits in the pNext chain with sType *_LOADER_*_CREATE_INFO and VK_LAYER_LINK_INFO. */
static VkLayerInstanceCreateInfo *instance_link(const VkInstanceCreateInfo *info) {
    for (VkLayerInstanceCreateInfo *item = (VkLayerInstanceCreateInfo *)info->pNext; item; item = (VkLayerInstanceCreateInfo *)item->pNext)
        if (item->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO && item->function == VK_LAYER_LINK_INFO) return item;
    return NULL;
}

static VkLayerDeviceCreateInfo *device_link(const VkDeviceCreateInfo *info) {
    for (VkLayerDeviceCreateInfo *item = (VkLayerDeviceCreateInfo *)info->pNext; item; item = (VkLayerDeviceCreateInfo *)item->pNext)
        if (item->sType == VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO && item->function == VK_LAYER_LINK_INFO) return item;
    return NULL;
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_CreateInstance(const VkInstanceCreateInfo *info, const VkAllocationCallbacks *allocator,
                                                           VkInstance *instance) {
    VkLayerInstanceCreateInfo *link = instance_link(info);
    if (!link) return VK_ERROR_INITIALIZATION_FAILED;
    next_instance_proc_addr = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
    link->u.pLayerInfo = link->u.pLayerInfo->pNext; /* the next layer finds its own link */
    PFN_vkCreateInstance create = (PFN_vkCreateInstance)next_instance_proc_addr(VK_NULL_HANDLE, "vkCreateInstance");
    return create ? create(info, allocator, instance) : VK_ERROR_INITIALIZATION_FAILED;
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_CreateDevice(VkPhysicalDevice physical_device, const VkDeviceCreateInfo *info,
                                                         const VkAllocationCallbacks *allocator, VkDevice *device) {
    VkLayerDeviceCreateInfo *link = device_link(info);
    if (!link) return VK_ERROR_INITIALIZATION_FAILED;
    PFN_vkGetInstanceProcAddr instance_proc_addr = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
    next_device_proc_addr = link->u.pLayerInfo->pfnNextGetDeviceProcAddr;
    link->u.pLayerInfo = link->u.pLayerInfo->pNext;
    PFN_vkCreateDevice create = (PFN_vkCreateDevice)instance_proc_addr(VK_NULL_HANDLE, "vkCreateDevice");
    if (!create) return VK_ERROR_INITIALIZATION_FAILED;

    VkDeviceCreateInfo filtered = *info;
    const char **names = without_hidden(info->ppEnabledExtensionNames, &filtered.enabledExtensionCount);
    if (!names) return VK_ERROR_OUT_OF_HOST_MEMORY;
    filtered.ppEnabledExtensionNames = names;
    VkResult result = create(physical_device, &filtered, allocator, device);
    free(names);
    return result;
}

LAYER_EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vlart_GetDeviceProcAddr(VkDevice device, const char *name) {
    if (strcmp(name, "vkGetDeviceProcAddr") == 0) return (PFN_vkVoidFunction)vlart_GetDeviceProcAddr;
    return next_device_proc_addr ? next_device_proc_addr(device, name) : NULL;
}

LAYER_EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vlart_GetInstanceProcAddr(VkInstance instance, const char *name) {
    if (strcmp(name, "vkGetInstanceProcAddr") == 0) return (PFN_vkVoidFunction)vlart_GetInstanceProcAddr;
    if (strcmp(name, "vkGetDeviceProcAddr") == 0) return (PFN_vkVoidFunction)vlart_GetDeviceProcAddr;
    if (strcmp(name, "vkCreateInstance") == 0) return (PFN_vkVoidFunction)layer_CreateInstance;
    if (strcmp(name, "vkCreateDevice") == 0) return (PFN_vkVoidFunction)layer_CreateDevice;
    return next_instance_proc_addr ? next_instance_proc_addr(instance, name) : NULL;
}
