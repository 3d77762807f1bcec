# procwire reference peer for Ruby: wire format v4 (docs/wire-format.md),
# written from that document alone.
#
# It speaks frames on byte streams (sections 2, 6, 7, 8): the stream socket
# a procwire parent hands a child, and pipes. Standard library, plus
# Debian's ruby-msgpack for the msgpack codec only.
#
# A child started by a procwire parent takes its channel from the
# environment:
#
#   require_relative "procwire"
#   ch = Procwire::Channel.from_env
#   ch.each { |job| ch.send_msg("#{job} accomplished!") }
#
# A Ruby parent hands one to a child (Rust or Ruby) the same way:
#
#   pid, ch = Procwire::Channel.spawn(["./worker"], codec: "msgpack")

require "json"
require "socket"

module Procwire
  VERSION = "4"
  DEFAULT_MAX_FRAME = 64 << 20
  # The one reserved prefix (section 2): a heartbeat on tcp://, too large
  # everywhere else.
  RESERVED = 0xFFFF_FFFF

  class Error < StandardError; end
  # The peer closed the channel cleanly: every message was received.
  class Disconnected < Error; end
  # The peer closed the stream in the middle of a frame.
  class UnexpectedEof < Error; end
  # A frame exceeds the maximum payload length.
  class FrameTooLarge < Error; end
  # The handler on the other side of an RPC call failed: its message.
  class Remote < Error; end

  # [encode, decode] for a codec name (section 4).
  def self.codec(name)
    case name
    when "msgpack"
      require "msgpack"
      [->(v) { MessagePack.pack(v) }, ->(b) { MessagePack.unpack(b) }]
    when "json"
      [->(v) { JSON.generate(v) }, ->(b) { JSON.parse(b) }]
    when "raw"
      [->(v) { v.to_s.b }, ->(b) { b }]
    else
      raise Error, "codec #{name.inspect} is not available in the Ruby peer"
    end
  end

  # Frames on one byte stream (a socket, or one end of a pipe), each way it
  # is open.
  class Channel
    include Enumerable
    attr_reader :io, :codec

    def initialize(io, codec: "msgpack", max_frame: DEFAULT_MAX_FRAME)
      @io = io
      @codec = codec
      @max_frame = max_frame
      @encode, @decode = Procwire.codec(codec)
      @next_id = 0
    end

    # The channel a procwire parent handed this process (section 6).
    def self.from_env(max_frame: DEFAULT_MAX_FRAME)
      version = ENV["PROCWIRE_VERSION"]
      unless version == VERSION
        raise Error, "PROCWIRE_VERSION=#{version.inspect}; this peer speaks version #{VERSION} only"
      end
      codec = ENV["PROCWIRE_CODEC"] or raise Error, "PROCWIRE_CODEC is not set"
      fd = Integer(ENV.fetch("PROCWIRE_FD") { raise Error, "PROCWIRE_FD is not set" })
      sock = Socket.for_fd(fd)
      unless sock.getsockopt(:SOCKET, :TYPE).int == Socket::SOCK_STREAM
        raise Error, "PROCWIRE_FD is not a stream socket"
      end
      sock.close_on_exec = true # no leak into programs this one runs
      sock.autoclose = true
      new(sock, codec: codec, max_frame: max_frame)
    end

    # Starts `cmd` (an array) with a channel to it, as a procwire parent
    # does: its end of a stream socket pair in PROCWIRE_FD. [pid, channel].
    def self.spawn(cmd, codec: "msgpack", env: {})
      ours, theirs = UNIXSocket.pair(:STREAM)
      vars = env.merge("PROCWIRE_FD" => theirs.fileno.to_s,
                       "PROCWIRE_CODEC" => codec,
                       "PROCWIRE_VERSION" => VERSION)
      pid = Process.spawn(vars, *cmd, theirs.fileno => theirs.fileno)
      theirs.close # the unused end: the child's end of stream depends on it
      [pid, new(ours, codec: codec)]
    end

    # Sends one message as one frame (section 2).
    def send_msg(value)
      payload = @encode.call(value).b
      if payload.bytesize > @max_frame || payload.bytesize >= RESERVED
        raise FrameTooLarge, "a frame of #{payload.bytesize} bytes exceeds #{@max_frame}"
      end
      @io.write([payload.bytesize].pack("N"), payload)
      @io.flush
    end

    # The next message; raises Disconnected at a clean end of stream.
    def recv
      length = read(4, true).unpack1("N")
      if length > @max_frame || length == RESERVED
        # Checked before anything is allocated for the payload.
        raise FrameTooLarge, "a frame of #{length} bytes exceeds #{@max_frame}"
      end
      @decode.call(read(length, false))
    end

    def each
      loop { yield recv }
    rescue Disconnected
      nil
    end

    # The optional hello (section 7): exchange and check.
    def hello(sends, receives)
      send_msg({ "procwire" => VERSION.to_i, "sends" => sends, "receives" => receives })
      theirs = recv
      unless theirs["procwire"] == VERSION.to_i && theirs["sends"] == receives &&
             theirs["receives"] == sends
        raise Error, "the peer does not match: #{theirs.inspect}"
      end
    end

    # Answers RPC calls until the caller closes the channel (section 8).
    def serve
      each do |call|
        body = begin
          { "Ok" => yield(call["body"]) }
        rescue StandardError => e
          { "Err" => "#{e.class}: #{e.message}" }
        end
        send_msg({ "id" => call["id"], "body" => body })
      end
    end

    # One RPC call, waiting for its reply (one caller at a time).
    def call(request)
      @next_id += 1
      send_msg({ "id" => @next_id, "body" => request })
      reply = recv
      raise Error, "reply to call #{reply["id"]}, expected #{@next_id}" unless reply["id"] == @next_id
      body = reply["body"]
      raise Remote, body["Err"] if body.key?("Err")
      body["Ok"]
    end

    def close
      @io.close unless @io.closed?
    end

    private

    def read(n, at_boundary)
      buf = "".b
      while buf.bytesize < n
        chunk = @io.read(n - buf.bytesize)
        if chunk.nil? || chunk.empty?
          raise Disconnected, "the peer closed the channel" if at_boundary && buf.empty?
          raise UnexpectedEof, "the peer closed the stream after #{buf.bytesize} of #{n} bytes"
        end
        buf << chunk
      end
      buf
    end
  end

  # A `procwire pool --framed` worker: answers each task (bytes) with the
  # block's answer (bytes), until the pool closes the channel.
  def self.work
    ch = Channel.from_env
    ch.each { |task| ch.send_msg(yield(task)) }
  end
end
