;; metadata.wat: the frame's payload is a metadata key; the handler writes
;; its value with tag 0x11 (asking with room for 4 bytes first, then with the
;; length the host gave), or "absent" with tag 0x12.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "env" "yomo_context_data_size" (func $size (result i32)))
  (import "env" "yomo_context_data" (func $data (param i32 i32) (result i32)))
  (import "env" "yomo_context_metadata" (func $meta (param i32 i32 i32 i32) (result i32)))
  (import "env" "yomo_write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "absent")
  (func (export "yomo_observe_datatags") (call $observe (i32.const 1)))
  (func (export "yomo_handler")
    (local $k i32)
    (local $n i32)
    (local.set $k (call $size))
    (drop (call $data (i32.const 1024) (local.get $k)))
    (local.set $n (call $meta (i32.const 1024) (local.get $k) (i32.const 4096) (i32.const 4)))
    (if (i32.eq (local.get $n) (i32.const -1))
      (then (drop (call $write (i32.const 0x12) (i32.const 0) (i32.const 6))) (return)))
    (if (i32.gt_u (local.get $n) (i32.const 4))
      (then (drop (call $meta (i32.const 1024) (local.get $k) (i32.const 4096) (local.get $n)))))
    (drop (call $write (i32.const 0x11) (i32.const 4096) (local.get $n)))))
