# The Linux guest's VMM PD (pds/linux-vmm) on libvmm 0.2.0, built as libvmm's own examples
# are (examples/simple/simple.mk): clang and lld, libvmm.a and sDDF's libsddf_util_debug.a
# from their sources (extracted by deps.sh into LG), and the guest's kernel, device tree
# and initramfs carried in the PD's image (libvmm's tools/package_guest_images.S).
# Run in the build directory: make -f vmm.mk MICROKIT_SDK=... MICROKIT_BOARD=... \
#   MICROKIT_CONFIG=... TOP=<repo> LG=<target/linux-guest> NUMBERS=<dir of vmm_iommu.h>
LIBVMM := $(LG)/libvmm
SDDF := $(LG)/sddf
BOARD_DIR := $(MICROKIT_SDK)/board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
ARCH := aarch64
CC := clang
LD := ld.lld
AR := llvm-ar
RANLIB := llvm-ranlib
SDDF_CUSTOM_LIBC := 1
SRC := $(TOP)/pds/linux-vmm
HERE := $(TOP)/images/linux-guest

CFLAGS := -ffreestanding -g3 -O2 -Wall -Werror -Wno-unused-function -DBOARD_$(MICROKIT_BOARD) \
	-target aarch64-none-elf -mstrict-align \
	-I$(BOARD_DIR)/include -I$(LIBVMM)/include -I$(SDDF)/include -I$(SDDF)/include/sddf/util/custom_libc \
	-I$(SDDF)/include/microkit -I$(TOP)/iommu-pd/c -I$(TOP)/pds/vpci -I$(NUMBERS) -MD -MP

all: linux-vmm.elf

include $(LIBVMM)/vmm.mk
include $(SDDF)/util/util.mk

vpath %.c $(LIBVMM)

# The initramfs's end goes into the device tree, so Linux reads exactly the archive.
linux.dtb: $(HERE)/linux.dts $(LG)/initramfs.cpio
	sed "s/INITRD_END/$$(printf '0x%x' $$((0x47000000 + $$(stat -c %s $(LG)/initramfs.cpio))))/" $< > linux.dts
	dtc -q -I dts -O dtb -o $@ linux.dts

images.o: $(LIBVMM)/tools/package_guest_images.S $(LG)/Image $(LG)/initramfs.cpio linux.dtb
	$(CC) -c -g3 -x assembler-with-cpp -DGUEST_KERNEL_IMAGE_PATH=\"$(LG)/Image\" \
		-DGUEST_DTB_IMAGE_PATH=\"linux.dtb\" -DGUEST_INITRD_IMAGE_PATH=\"$(LG)/initramfs.cpio\" \
		-target aarch64-none-elf $< -o $@

vmm.o: $(SRC)/main.c $(NUMBERS)/vmm_iommu.h
	$(CC) $(CFLAGS) -c -o $@ $<
ecam_trap.o: $(SRC)/ecam_trap.c
	$(CC) $(CFLAGS) -c -o $@ $<
stopped_disk.o: $(SRC)/stopped_disk.c
	$(CC) $(CFLAGS) -c -o $@ $<
restart.o: $(SRC)/restart.c
	$(CC) $(CFLAGS) -c -o $@ $<
# The configuration-space emulation both VMMs share.
vpci.o: $(TOP)/pds/vpci/vpci.c
	$(CC) $(CFLAGS) -c -o $@ $<

linux-vmm.elf: vmm.o ecam_trap.o stopped_disk.o restart.o vpci.o images.o libvmm.a libsddf_util_debug.a
	$(LD) -L$(BOARD_DIR)/lib vmm.o ecam_trap.o stopped_disk.o restart.o vpci.o images.o --start-group -lmicrokit -Tmicrokit.ld libvmm.a \
		libsddf_util_debug.a --end-group -o $@

-include vmm.d ecam_trap.d stopped_disk.d restart.d vpci.d
