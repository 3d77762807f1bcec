# Calls and replies (wire format section 8) between Ruby and Rust
# (examples/ruby_lesson.rs): squares of 1..5, and -1, which the server
# refuses; the refusal comes back as the caller's error.
#
#   ruby examples/ruby/rpc.rb parent target/debug/examples/ruby_lesson

require_relative "../../peers/ruby/procwire"

case ARGV[0]
when "parent"
  pid, ch = Procwire::Channel.spawn([ARGV[1], "rpc", "child"], codec: "msgpack")
  squares = (1..5).map { |n| ch.call(n) }
  puts "squares #{squares.inspect}"
  refused = begin
    ch.call(-1)
    nil
  rescue Procwire::Remote => e
    e.message
  end
  puts "error #{refused}"
  ch.close
  _, status = Process.wait2(pid)
  exit(status.success? && squares == [1, 4, 9, 16, 25] && refused&.include?("negative") ? 0 : 1)
when "child"
  Procwire::Channel.from_env.serve do |n|
    raise ArgumentError, "no square of a negative number here: #{n}" if n.negative?

    n * n
  end
else
  abort "usage: rpc.rb parent RUST_BIN | child"
end
