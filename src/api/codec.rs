//! The gRPC codec of plumbline's services (server and generated client):
//! tonic's prost codec, except that a message is decoded from one
//! contiguous byte slice rather than through tonic's `DecodeBuf`.
//!
//! Why: prost reads every varint, tag and string through the `Buf` it is
//! given. On a `&[u8]` those reads inline to a few instructions; through
//! `DecodeBuf` each one is a call into `BytesMut`. A `RankItems` page of 50
//! items is about a thousand fields, and decoding it that way cost about a
//! third more instructions than the slice. tonic assembles each message
//! in one `BytesMut` before decoding it, so the slice is (nearly) always
//! there; when it is not, this falls back to decoding from the buffer.

use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// Encodes like `tonic_prost::ProstCodec`; decodes from a slice.
#[derive(Debug, Clone)]
pub struct SliceCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        SliceCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder { _pd: PhantomData }
    }
}

/// Decodes a whole message from the buffer's contiguous bytes.
#[derive(Debug, Clone, Default)]
pub struct SliceDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let decoded = match buf.chunk().get(..len) {
            Some(bytes) => {
                let m = U::decode(bytes);
                buf.advance(len);
                m
            }
            None => U::decode(buf),
        };
        // As tonic_prost does: a message that does not parse is INTERNAL.
        decoded
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}
