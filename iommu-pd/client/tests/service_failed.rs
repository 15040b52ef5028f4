//! A call the IOMMU PD was serving when it panicked is answered from its panic hook with
//! `SERVICE_FAILED` (29), the label alone (the hook writes no message register: the IPC
//! buffer may be the one thing that panicked). Every call of the client library reads it
//! as that typed error and prints it by the name and number C prints
//! (`iommu_strerror`): before, the label was no code and every call read it as
//! `Malformed`, as if the request had been refused for its fields.

use iommu_client::{Channel, Client};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Rights, MAX_REPLY_VALUES};

/// The IOMMU PD's panic hook as a caller meets it: whatever the call, the label 29 and
/// registers it never wrote (left as they were: here, a MAP's IOVA in the first).
struct PanickedInTheCall;

impl Channel for PanickedInTheCall {
    fn call(&mut self, _label: u64, _mrs: &[u64], reply: &mut [u64; MAX_REPLY_VALUES]) -> u64 {
        reply[0] = 0x10_0000;
        29
    }
}

#[test]
fn every_call_answered_by_the_panic_hook_reads_service_failed() {
    let mut c = Client::new(PanickedInTheCall);
    let d = DeviceId(0);
    let answers = [
        c.map(Handle(1), d, 0, 0x1000, None, Rights::READ_WRITE).map(|_| ()),
        c.unmap(d, &[0x10_0000]),
        c.revoke(Handle(2)),
        c.release(Handle(2)),
        c.resume(d),
        c.stop(d).map(|_| ()),
        c.config_read(d, 0x10, 4).map(|_| ()),
        c.config_write(d, 4, 2, 6).map(|_| ()),
        c.query().map(|_| ()),
        c.query_mapping(0).map(|_| ()),
        c.ack_faults(0).map(|_| ()),
    ];
    for answer in answers {
        assert_eq!(answer, Err(ErrorCode::ServiceFailed));
    }
    assert_eq!(ErrorCode::ServiceFailed.to_string(), "SERVICE_FAILED (29)");
}
