//! What every request is told about its connection, in the types the frameworks read: axum's
//! `ConnectInfo` (feature `axum`) and tonic's `TcpConnectInfo` (feature `tonic`), so that
//! handlers written for `axum::serve` or tonic's `Server` see their peer unchanged.

/// A connection's addresses, ready to be put on each of its requests.
#[derive(Clone)]
pub(crate) struct Peer<A> {
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    addr: A,
    #[cfg(feature = "tonic")]
    tcp: Option<tonic::transport::server::TcpConnectInfo>,
}

impl<A: Clone + Send + Sync + 'static> Peer<A> {
    /// The peer at `addr`, on a listener bound to `local`.
    pub(crate) fn new(addr: A, local: Option<&A>) -> Self {
        #[cfg(not(feature = "tonic"))]
        let _ = local;
        Self {
            #[cfg(feature = "tonic")]
            tcp: tcp_connect_info(&addr, local),
            addr,
        }
    }

    /// Puts the connection's addresses in a request's extensions. Nothing without the
    /// features: then it costs nothing.
    #[inline]
    pub(crate) fn describe(&self, _extensions: &mut http::Extensions) {
        #[cfg(feature = "axum")]
        _extensions.insert(axum::extract::ConnectInfo(self.addr.clone()));
        #[cfg(feature = "tonic")]
        if let Some(tcp) = &self.tcp {
            _extensions.insert(tcp.clone());
        }
    }
}

/// tonic's description of a TCP connection, when the listener's addresses are IP ones.
#[cfg(feature = "tonic")]
fn tcp_connect_info<A: 'static>(
    addr: &A,
    local: Option<&A>,
) -> Option<tonic::transport::server::TcpConnectInfo> {
    use std::any::Any;
    use std::net::SocketAddr;
    let remote = (addr as &dyn Any).downcast_ref::<SocketAddr>()?;
    let local = local.and_then(|local| (local as &dyn Any).downcast_ref::<SocketAddr>());
    Some(tonic::transport::server::TcpConnectInfo {
        local_addr: local.copied(),
        remote_addr: Some(*remote),
    })
}
