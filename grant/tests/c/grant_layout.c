/*
 * Prints the v1 grant-table layout and constants of Xen's public/grant_table.h as
 * `key=value` lines, for grant/tests/c_layout.rs to compare with pvio-grant's.
 * Uses only the system's Xen headers (Debian libxen-dev); nothing here is copied from Rust.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <xen/xen.h>
#include <xen/grant_table.h>

#define SIGNED(expr) ((__typeof__(expr))-1 < 0)
#define STRUCT(name, type) \
    printf("size.%s=%zu\nalign.%s=%zu\n", name, sizeof(type), name, _Alignof(type))
#define FIELD(name, type, field)                                                   \
    do {                                                                           \
        type v_;                                                                   \
        printf("offset.%s.%s=%zu\n", name, #field, offsetof(type, field));       \
        printf("size.%s.%s=%zu\n", name, #field, sizeof(v_.field));              \
        printf("signed.%s.%s=%d\n", name, #field, (int)SIGNED(v_.field));        \
    } while (0)
#define CONST(c) printf("%s=%lld\n", #c, (long long)(c))

int main(void)
{
    STRUCT("grant_entry_v1", grant_entry_v1_t);
    FIELD("grant_entry_v1", grant_entry_v1_t, flags);
    FIELD("grant_entry_v1", grant_entry_v1_t, domid);
    FIELD("grant_entry_v1", grant_entry_v1_t, frame);
    printf("size.grant_ref_t=%zu\n", sizeof(grant_ref_t));
    printf("size.domid_t=%zu\n", sizeof(domid_t));

    CONST(GTF_invalid);
    CONST(GTF_permit_access);
    CONST(GTF_accept_transfer);
    CONST(GTF_transitive);
    CONST(GTF_type_mask);
    CONST(GTF_readonly);
    CONST(GTF_reading);
    CONST(GTF_writing);
    CONST(GTF_PWT);
    CONST(GTF_PCD);
    CONST(GTF_PAT);
    CONST(GTF_sub_page);
    CONST(GTF_transfer_committed);
    CONST(GTF_transfer_completed);
    CONST(GNTTAB_NR_RESERVED_ENTRIES);
    CONST(DOMID_SELF);

    CONST(GNTST_okay);
    CONST(GNTST_general_error);
    CONST(GNTST_bad_domain);
    CONST(GNTST_bad_gntref);
    CONST(GNTST_bad_handle);
    CONST(GNTST_bad_virt_addr);
    CONST(GNTST_bad_dev_addr);
    CONST(GNTST_no_device_space);
    CONST(GNTST_permission_denied);
    CONST(GNTST_bad_page);
    CONST(GNTST_bad_copy_arg);
    CONST(GNTST_address_too_big);
    CONST(GNTST_eagain);
    CONST(GNTST_no_space);
    return 0;
}
