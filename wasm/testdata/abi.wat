;; abi.wat: a guest that exercises the whole YoMo ABI. What yomo_handler
;; does depends on the frame's tag (see the comment of each case). Built with
;; `wat2wasm abi.wat` (go generate in the parent directory).
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "env" "yomo_context_tag" (func $tag (result i32)))
  (import "env" "yomo_context_data_size" (func $size (result i32)))
  (import "env" "yomo_context_data" (func $data (param i32 i32) (result i32)))
  (import "env" "yomo_write" (func $write (param i32 i32 i32) (result i32)))
  (import "env" "yomo_write_with_target" (func $write_target (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "yomo_get_wanted_target" (func $wanted (param i32 i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "peer")
  (data (i32.const 32) "wasm-target")

  ;; Set by _initialize; yomo_init fails with 9 if it was not called first.
  (global $initialized (mut i32) (i32.const 0))
  ;; Counts handler calls of this instance (tag 11 reports it).
  (global $calls (mut i32) (i32.const 0))

  (func (export "_initialize") (global.set $initialized (i32.const 1)))

  (func (export "yomo_init") (result i32)
    (if (result i32) (global.get $initialized)
      (then (i32.const 0)) (else (i32.const 9))))

  (func (export "yomo_observe_datatags")
    (local $t i32)
    (local.set $t (i32.const 1))
    (loop $more
      (call $observe (local.get $t))
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br_if $more (i32.le_u (local.get $t) (i32.const 12)))))

  (func (export "yomo_wanted_target")
    (call $wanted (i32.const 32) (i32.const 11)))

  ;; $read copies the payload to 1024 with a buffer of 4 bytes first, as a
  ;; guest that guesses too small would, and returns its length. It traps
  ;; if the host copied anything into the small buffer or disagrees with
  ;; yomo_context_data_size.
  (func $read (result i32)
    (local $n i32)
    (i32.store (i32.const 1024) (i32.const 0xeeeeeeee))
    (local.set $n (call $data (i32.const 1024) (i32.const 4)))
    (if (i32.ne (local.get $n) (call $size)) (then unreachable))
    (if (i32.gt_u (local.get $n) (i32.const 4))
      (then
        (if (i32.ne (i32.load (i32.const 1024)) (i32.const 0xeeeeeeee))
          (then unreachable))
        (if (i32.ne (call $data (i32.const 1024) (local.get $n)) (local.get $n))
          (then unreachable))))
    (local.get $n))

  (func (export "yomo_handler")
    (local $n i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (block $done
    (block $t12 (block $t11 (block $t10 (block $t9 (block $t8 (block $t7 (block $t6
    (block $t5 (block $t4 (block $t3 (block $t2 (block $t1 (block $t0
      (br_table $t0 $t1 $t2 $t3 $t4 $t5 $t6 $t7 $t8 $t9 $t10 $t11 $t12 $done
        (call $tag))
    ) ;; tag 0: nothing
      (br $done)
    ) ;; tag 1: echo the payload three times, tags 100, 101, 102
      (local.set $n (call $read))
      (drop (call $write (i32.const 100) (i32.const 1024) (local.get $n)))
      (drop (call $write (i32.const 101) (i32.const 1024) (local.get $n)))
      (drop (call $write (i32.const 102) (i32.const 1024) (local.get $n)))
      (br $done)
    ) ;; tag 2: echo with target "peer", tag 103
      (local.set $n (call $read))
      (drop (call $write_target (i32.const 103) (i32.const 1024) (local.get $n)
        (i32.const 16) (i32.const 4)))
      (br $done)
    ) ;; tag 3: write statuses: data out of range, target out of range, a
      ;; write the host fails (tag 999); report them as 3 bytes, tag 104
      (i32.store8 (i32.const 2048)
        (call $write (i32.const 104) (i32.const 0xfffffff0) (i32.const 100)))
      (i32.store8 (i32.const 2049)
        (call $write_target (i32.const 104) (i32.const 1024) (i32.const 0)
          (i32.const 0xffffff00) (i32.const 1000)))
      (i32.store8 (i32.const 2050)
        (call $write (i32.const 999) (i32.const 1024) (i32.const 1)))
      (drop (call $write (i32.const 104) (i32.const 2048) (i32.const 3)))
      (br $done)
    ) ;; tag 4: trap
      unreachable
    ) ;; tag 5: spin forever
      (loop $forever (br $forever))
    ) ;; tag 6: grow 1 MiB at a time until refused, then trap
      (loop $grow
        (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
      unreachable
    ) ;; tag 7: exit with code 3
      (call $exit (i32.const 3))
      (br $done)
    ) ;; tag 8: misuse: register a tag from the handler
      (call $observe (i32.const 1))
      (br $done)
    ) ;; tag 9: echo once, tag 0x11 (the benchmark's function)
      (local.set $n (call $data (i32.const 1024) (i32.const 60000)))
      (drop (call $write (i32.const 0x11) (i32.const 1024) (local.get $n)))
      (br $done)
    ) ;; tag 10: ask for the payload at an address outside memory
      (drop (call $data (i32.const 0xffffff00) (i32.const 1000)))
      (br $done)
    ) ;; tag 11: report this instance's call count as 4 bytes, tag 105
      (i32.store (i32.const 2048) (global.get $calls))
      (drop (call $write (i32.const 105) (i32.const 2048) (i32.const 4)))
      (br $done)
    ) ;; tag 12: write an empty frame (tag 106), then spin forever
      (drop (call $write (i32.const 106) (i32.const 0) (i32.const 0)))
      (loop $forever (br $forever))
    ))
)
